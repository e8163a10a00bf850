"""The machine a figure was measured on, as studies and benchmarks record it, read without
importing TensorFlow: the results pages state it once in their header."""

import importlib.metadata
import os
import platform
import time


def record():
    """{cpu, avx512, cpus, tensorflow, python, date}: the CPU model, whether it has AVX-512
    (this code runs about twice as fast with it as on AVX2-only CPUs), the CPUs this process
    may use, the TensorFlow and Python versions and today's UTC date."""
    model, cpu_flags = "", []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and not model:
                    model = value.strip()
                elif key.strip() == "flags" and not cpu_flags:
                    cpu_flags = value.split()
    except OSError:  # not Linux
        pass
    try:
        tensorflow = importlib.metadata.version("tensorflow")
    except importlib.metadata.PackageNotFoundError:
        tensorflow = None
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": model or platform.processor() or platform.machine(),
            "avx512": "avx512f" in cpu_flags, "cpus": cpus, "tensorflow": tensorflow,
            "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d", time.gmtime())}
