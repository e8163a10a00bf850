"""Small file helpers shared by every module that writes outputs."""

import os
import tempfile


# The process's umask, read once at import (reading it means setting it): files written
# through a private temporary file get the permissions a plain open() would give them.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def atomic_write(path, write_fn):
    """Calls write_fn(tmp_path), then renames tmp_path to path: readers never see half a file,
    and a crash mid-write leaves the previous file (or none), never a truncated one. The
    file gets the usual permissions (0666 less the umask), not mkstemp's 0600."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.splitext(path)[1])
    os.close(fd)
    try:
        write_fn(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def cache_dir():
    """Where derived, re-creatable files live: $GAN_CACHE_DIR, else ~/.cache/gan."""
    return os.environ.get("GAN_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "gan")
