"""Small file helpers shared by every module that writes outputs."""

import os
import tempfile


def atomic_write(path, write_fn):
    """Calls write_fn(tmp_path), then renames tmp_path to path: readers never see half a file,
    and a crash mid-write leaves the previous file (or none), never a truncated one."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.splitext(path)[1])
    os.close(fd)
    try:
        write_fn(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def cache_dir():
    """Where derived, re-creatable files live: $GAN_CACHE_DIR, else ~/.cache/gan."""
    return os.environ.get("GAN_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "gan")
