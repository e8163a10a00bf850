"""XLA's process-wide settings for training: one thread per matrix product on CPU, and a
persistent compilation cache, so that a rerun with the same settings loads the compiled
training loop instead of compiling it again (docs/speed.md).

TensorFlow reads both once per process, when it sets up its devices (its import does that
under absl's app.run): `python -m gan.train` calls `configure` before importing it. Neither
changes what is computed: a cached program is the very program XLA would compile.
"""

import glob
import hashlib
import importlib.util
import os
import platform
import tempfile

CPU_FLAG = "--xla_cpu_multi_thread_eigen=false"
_CACHE_FLAG = "tf_xla_persistent_cache_directory"

_active_cache = None  # (folder, prefix) that enable_cache pointed TensorFlow at, if any
_configured = False


class CacheError(RuntimeError):
    """Compiling failed with the compilation cache on, also after clearing it (e.g. a full or
    read-only cache folder)."""


def configure(config, log=print):
    """XLA's settings for a training run of `config` (a TrainConfig): configure_cpu, and
    with config.xla the compilation cache in config.resolved_xla_cache_dir() unless that is
    "". Once per process (later calls do nothing): TensorFlow reads the settings once, when
    it sets up its devices, so an entry point calls this before importing TensorFlow."""
    global _configured
    if _configured:
        return
    _configured = True
    configure_cpu()
    folder = config.resolved_xla_cache_dir()
    if config.xla and folder:
        enable_cache(folder, log=log)


def configure_cpu():
    """Makes XLA run each matrix product of the compiled loop on one thread (independent ops
    still run in parallel). XLA's default splits every product over all cores; for this
    project's small products that gains nothing in the bare loop but loses whenever another
    thread needs a core: the image writing, logging and data threads of a real run
    (docs/speed.md). Speed only: the arithmetic is unchanged. Respects an XLA_FLAGS that
    already sets it."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_multi_thread_eigen" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {CPU_FLAG}".strip()


def machine_description():
    """What a compiled CPU program depends on besides its own code: TensorFlow's build (its
    installed version and the size and time of its shared libraries, found without
    importing it), the XLA_FLAGS and TF_XLA_FLAGS in effect, the architecture and the CPU's
    model and instruction-set flags (/proc/cpuinfo on Linux)."""
    package = os.path.dirname(importlib.util.find_spec("tensorflow").origin)
    site = os.path.dirname(package)
    parts = [platform.machine(), platform.processor(), os.environ.get("XLA_FLAGS", ""),
             os.environ.get("TF_XLA_FLAGS", "")]
    parts += sorted(name for name in os.listdir(site) if name.endswith(".dist-info")
                    and name.startswith(("tensorflow", "tf_nightly")))
    libraries = [os.path.join(glob.escape(package), pattern)
                 for pattern in ("libtensorflow*", os.path.join("python", "*pywrap_tensorflow*"))]
    for path in sorted(sum((glob.glob(pattern) for pattern in libraries), [])):
        info = os.stat(path)
        parts.append(f"{os.path.relpath(path, package)} {info.st_size} {info.st_mtime_ns}")
    try:
        with open("/proc/cpuinfo") as f:  # the first processor's, not its clock (it varies)
            parts += [line for line in f.read().split("\n\n")[0].splitlines()
                      if line.startswith(("vendor_id", "cpu family", "model", "flags"))]
    except OSError:
        pass
    return "\n".join(parts)


def cache_prefix(description):
    """File-name prefix of the cache entries made on a machine described by `description`
    (machine_description): entries compiled by another TensorFlow or for another CPU have
    another prefix and are never loaded."""
    return "gan-" + hashlib.sha256(description.encode()).hexdigest()[:16]


def enable_cache(folder, log=print):
    """Points XLA's persistent compilation cache (CPU programs only) at `folder`, creating
    it. Returns the folder, or None if it cannot be written (a note is logged and the run
    compiles as usual). A TF_XLA_FLAGS that already names a cache folder is respected:
    then nothing is changed and None is returned."""
    global _active_cache
    xla_flags = os.environ.get("TF_XLA_FLAGS", "")
    if _CACHE_FLAG in xla_flags:
        return None
    try:
        os.makedirs(folder, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".probe-")
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        log(f"Note: XLA's compilation cache is off: {folder} cannot be written "
            f"({e.strerror or e}).")
        return None
    prefix = cache_prefix(machine_description())
    settings = (f"--{_CACHE_FLAG}={folder} --tf_xla_persistent_cache_prefix={prefix} "
                "--tf_xla_persistent_cache_device_types=CPU")
    os.environ["TF_XLA_FLAGS"] = f"{xla_flags} {settings}".strip()
    _active_cache = (folder, prefix)
    return folder


def active_cache():
    """The folder enable_cache set in this process, or None."""
    return _active_cache[0] if _active_cache else None


def clear_cache():
    """Removes the entries of the cache enable_cache set (those of its prefix, i.e. of this
    machine and settings) from its folder; returns how many."""
    if not _active_cache:
        return 0
    folder, prefix = _active_cache
    entries = glob.glob(os.path.join(glob.escape(folder), glob.escape(prefix) + "__*"))
    for path in entries:
        os.remove(path)
    return len(entries)
