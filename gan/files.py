"""Small file helpers shared by every module that writes outputs, and the one place where a
full disk becomes a clear error (DiskFullError)."""

import contextlib
import errno
import os
import shutil
import sys
import tempfile


# The process's umask, read once at import (reading it means setting it): files written
# through a private temporary file get the permissions a plain open() would give them.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def umask():
    """The process's umask (as read at import)."""
    return _UMASK

DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
# How TensorFlow's errors say it (it maps ENOSPC to ResourceExhaustedError, which also
# stands for running out of memory: only these messages mean a full disk).
_DISK_FULL_TEXTS = (os.strerror(errno.ENOSPC), os.strerror(errno.EDQUOT))


class DiskFullError(OSError):
    """A write failed for want of space (ENOSPC, or a disk quota). `what` was being written
    to `path`; `needed`: bytes it takes (None if unknown); `free`: bytes free on that file
    system when it failed (None if unknown). str() is the whole message, also in
    `strerror`."""

    def __init__(self, what, path, needed=None, note=""):
        self.what, self.needed, self.free = what, needed, free_bytes(path)
        space = []
        if needed is not None:
            space.append(f"it needs about {format_size(needed)}")
        if self.free is not None:
            space.append(f"{format_size(self.free)} free there")
        message = (f"no space left on device while writing {what} to {path}"
                   + (f" ({', '.join(space)})" if space else "") + "."
                   + (f" {note}" if note else "")
                   + " Free some space and run the same command again.")
        super().__init__(errno.ENOSPC, message, path)

    def __str__(self):
        return self.strerror


def is_disk_full(error):
    """True if `error` says a write found no space: an OSError with errno ENOSPC or EDQUOT,
    or a TensorFlow error (an OpError, e.g. ResourceExhaustedError from SaveV2) whose
    message says so."""
    if isinstance(error, OSError):
        return error.errno in DISK_FULL_ERRNOS
    tf = sys.modules.get("tensorflow")  # not imported here: this module stays light
    if tf is not None and isinstance(error, tf.errors.OpError):
        return any(text in error.message for text in _DISK_FULL_TEXTS)
    return False


@contextlib.contextmanager
def disk_full_as_error(what, path, needed=None, note=""):
    """Turns a disk-full error raised in the `with` block (is_disk_full) into DiskFullError
    (see there for the arguments), chained to the original; other errors pass unchanged."""
    try:
        yield
    except DiskFullError:
        raise
    except Exception as e:
        if not is_disk_full(e):
            raise
        raise DiskFullError(what, path, needed, note) from e


def free_bytes(path):
    """Bytes free to this user on the file system holding `path` (or its nearest existing
    parent folder); None if that cannot be told."""
    folder = os.path.abspath(path)
    while not os.path.exists(folder) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def format_size(num_bytes):
    """e.g. 512 bytes, 12.3 KB, 5.2 MB, 1.1 GB (powers of 1000)."""
    if num_bytes < 1000:
        return f"{num_bytes} bytes"
    for unit in ("KB", "MB", "GB", "TB"):
        num_bytes /= 1000
        if num_bytes < 1000 or unit == "TB":
            return f"{num_bytes:.1f} {unit}"


def atomic_write(path, write_fn, what="a file", needed=None):
    """Calls write_fn(tmp_path), then renames tmp_path to path: readers never see half a file,
    and a crash mid-write leaves the previous file (or none), never a truncated one. The
    file gets the usual permissions (0666 less the umask), not mkstemp's 0600.

    A full disk raises DiskFullError naming `what` (e.g. "the image strip") and `path`,
    with `needed` (bytes, if known); the temporary file is removed, the previous file kept.
    """
    folder = os.path.dirname(os.path.abspath(path))
    with disk_full_as_error(what, path, needed):
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-",
                                   suffix=os.path.splitext(path)[1])
        os.close(fd)
        try:
            write_fn(tmp)
            os.chmod(tmp, 0o666 & ~_UMASK)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise


def write_bytes(path, data, what="a file"):
    """atomic_write of the bytes `data` (so a full disk's message knows their size)."""

    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(data)

    atomic_write(path, write, what, needed=len(data))


def cache_dir():
    """Where derived, re-creatable files live: $GAN_CACHE_DIR, else ~/.cache/gan."""
    return os.environ.get("GAN_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "gan")


def write_cached_arrays(path, **arrays):
    """Writes numpy `arrays` to the .npz cache file `path` (atomically). Best effort: a
    read-only or full disk only costs the next reader the time it saves, never the run."""
    import numpy as np

    try:
        atomic_write(path, lambda tmp: np.savez(tmp, **arrays))
    except OSError:
        pass


# --- checks of output paths, made before any work and creating nothing ------------------

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def nearest_existing(path):
    """`path` made absolute, or its nearest parent that exists."""
    path = os.path.abspath(path)
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return path


def creatable_dir_problem(path):
    """Why the folder `path` could not be created (or written, if it exists), or None. Leaves
    nothing behind (a refused command leaves no new folder): it tries to write a file into
    the nearest existing folder and removes it, which also tells a read-only file system or
    a folder only root could write, where permission bits (os.access) say yes to root."""
    path = os.path.abspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        return "is a file, not a folder"
    existing = nearest_existing(path)
    if not os.path.isdir(existing):
        return f"cannot be created: {existing} is a file, not a folder"
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".probe-")
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        reason = f"is not writable ({e.strerror or e})"
        return reason if existing == path else f"cannot be created: {existing} {reason}"
    return None


def inside(path, folder):
    """True if `path` is `folder` or lies under it (links resolved)."""
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def check_output_file(path, flag, suffixes):
    """Raises ValueError naming --`flag` unless `path` can take a new file: not a folder, one
    of the `suffixes` (e.g. (".png",)), its folder creatable, and not among the package's
    own files (in an editable install those are the repository's)."""
    if os.path.isdir(path):
        raise ValueError(f"--{flag}={path} is a folder; give a file name ending in "
                         f"{' or '.join(suffixes)}")
    if not path.lower().endswith(tuple(suffixes)):
        raise ValueError(f"--{flag}={path}: the file name must end in {' or '.join(suffixes)}")
    if inside(path, PACKAGE_DIR):
        raise ValueError(f"--{flag}={path} is inside the gan package's own folder; "
                         "write it elsewhere")
    problem = creatable_dir_problem(os.path.dirname(os.path.abspath(path)))
    if problem:
        raise ValueError(f"--{flag}={path}: its folder {problem}")


def check_data_dir(path, flag="data_dir"):
    """Raises ValueError naming --`flag` if the data folder `path` (None: the default) is a
    file: the "not prepared, copy it into ..." advice would then point into that file."""
    if path and os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"--{flag}={path} is a file, not a TFDS data folder (give the folder "
                         "that holds mnist/3.0.1/, or leave it out for $TFDS_DATA_DIR)")
def resolve_data_dir(data_dir=None):
    """The folder TFDS reads: `data_dir`, else $TFDS_DATA_DIR, else ~/tensorflow_datasets."""
    if data_dir:
        return os.path.abspath(os.path.expanduser(data_dir))
    env = os.environ.get("TFDS_DATA_DIR")
    if env:
        return os.path.abspath(os.path.expanduser(env))
    return os.path.join(os.path.expanduser("~"), "tensorflow_datasets")
