"""XLA's process-wide settings for training: one thread per matrix product on CPU, and a
persistent compilation cache, so that a rerun with the same settings loads the compiled
training loop instead of compiling it again (docs/speed.md).

TensorFlow reads both once per process, when it sets up its devices (its import does that
under absl's app.run): `python -m gan.train` calls `configure` before importing it. Neither
changes what is computed: a cached program is the very program XLA would compile.
"""

import contextlib
import glob
import hashlib
import importlib.util
import os
import platform
import sys
import tempfile
import threading

CPU_FLAG = "--xla_cpu_multi_thread_eigen=false"
_CACHE_FLAG = "tf_xla_persistent_cache_directory"

# Lines TensorFlow's C++ logging writes to fd 2 when it loads a cached program, although the
# load succeeds (docs/speed.md); quiet_cache_messages drops the lines that contain one of these.
# The AOT loader's complaint is dropped only for LLVM's "prefer-no-*" tuning hints, which are
# not instructions: a missing instruction set would still be shown.
HARMLESS_CACHE_MESSAGES = (
    b"] Error parsing text-format tensorflow.XlaSerializedCacheEntry: ",
    b"] Loading XLA:CPU AOT result. Target machine feature +prefer-no-",
)

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


@contextlib.contextmanager
def quiet_cache_messages(patterns=HARMLESS_CACHE_MESSAGES):
    """Within the block, drops the lines written to file descriptor 2 that contain one of
    `patterns` (bytes) and forwards every other line to the real fd 2, unchanged and in
    order. TensorFlow's C++ logging writes straight to fd 2 (not sys.stderr) and ignores
    TF_CPP_MIN_LOG_LEVEL for these "E" lines, so only the descriptor itself can filter them.

    fd 2 is process-wide: whatever any thread writes to it meanwhile goes through the filter
    too (and is kept unless it matches). On exit, also by an exception, fd 2 is restored and
    the pipe drained, a last line without a newline included. Without an open fd 2 the block
    runs unfiltered."""
    _flush_stderr()  # what Python buffered before the block goes out first, unfiltered
    try:
        real = os.dup(2)
    except OSError:
        yield
        return
    read_end, write_end = os.pipe()
    try:  # room for 1 MiB of messages, so a writer rarely waits for the reader (Linux only)
        import fcntl
        fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 1 << 20)
    except (ImportError, AttributeError, OSError):
        pass

    def kept(line):
        return not any(pattern in line for pattern in patterns)

    def forward():
        pending, out = b"", real
        while chunk := os.read(read_end, 1 << 16):  # b"" at EOF: every write end is closed
            *lines, pending = (pending + chunk).split(b"\n")  # pending: a line not yet ended
            out = _write_all(out, b"".join(line + b"\n" for line in lines if kept(line)))
        if pending and kept(pending):
            _write_all(out, pending)
        os.close(read_end)
        os.close(real)

    # A daemon, and joined for at most 10 s: should a child process started in the block still
    # hold the pipe at exit, the reader goes on forwarding its lines after the block, without
    # making the block or Python's exit wait for that child.
    reader = threading.Thread(target=forward, name="quiet_cache_messages", daemon=True)
    reader.start()
    os.dup2(write_end, 2)
    try:
        yield
    finally:
        _flush_stderr()  # Python's writes of the block go through the filter too
        os.dup2(real, 2)
        os.close(write_end)  # the pipe's last write end, unless a child holds one: EOF
        reader.join(timeout=10)


def _flush_stderr():
    try:
        sys.stderr.flush()
    except (AttributeError, OSError, ValueError):  # no sys.stderr, or a closed one
        pass


def _write_all(fd, data):
    """Writes all of `data` to `fd` (os.write may write part of it); returns fd, or None once
    fd cannot be written (e.g. a closed terminal), after which data is dropped: the reader
    must keep emptying the pipe, or the writers to fd 2 would block."""
    while data and fd is not None:
        try:
            data = data[os.write(fd, data):]
        except OSError:
            return None
    return fd
