"""One writer per run folder: an exclusive lock on a training run's checkpoint folder.

A training run holds `fcntl.flock` on `<checkpoint_dir>/.lock` for as long as it trains; a
second run on the same folder gets FolderInUseError at once, naming the folder and the
holder's process id. The kernel drops the lock when the holder's file is closed, which
includes the holder's death by any means (kill -9, a crash), so a lock never has to be
deleted by hand: the file stays, only a lock held on it counts. Nothing is ever written
into the file, so a run that finds nothing to do changes no byte of the folder.

Read-only commands (gan.sample, gan.evaluate, gan.export) never take the lock.
"""

import contextlib
import errno
import os

try:
    import fcntl
except ImportError:  # not a POSIX system: runs go unlocked (see hold)
    fcntl = None

LOCK_FILE = ".lock"

# Folders this process holds: {real path: open holds}. A nested hold of the same folder in
# this process (gan.train takes the lock before TensorFlow's import, train() again once the
# strategy is known) shares the outer one's lock.
_held = {}


class FolderInUseError(RuntimeError):
    """Another process holds the lock of a run folder. `pid` is its process id, or None
    where the system does not say (not Linux, or a holder on another host)."""

    def __init__(self, folder, pid):
        self.folder, self.pid = folder, pid
        if pid is None:
            who = "another process (its id is not available on this system)"
        else:
            who = f"process {pid}"
            command = _command_line(pid)
            if command:
                who += f" ({command})"
        super().__init__(
            f"--checkpoint_dir={folder} is in use by another training run: {who} holds its "
            f"lock {os.path.join(folder, LOCK_FILE)}. Only one run may write a run folder; "
            "wait for that run to end (or stop it), or train into another --checkpoint_dir. "
            "Nothing was changed.")


def holder_pid(path):
    """The id of the process holding a flock on the file at `path`, from /proc/locks
    (Linux; ids as seen from this process's pid namespace), or None if it is not listed."""
    try:
        info = os.stat(path)
        with open("/proc/locks") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    # e.g. "1: FLOCK  ADVISORY  WRITE 9894 fe:00:2146421 0 EOF": pid, then device (major and
    # minor in hex) and inode. Lines of waiting processes hold "->" and are skipped.
    wanted = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    for line in lines:
        fields = line.split()
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == wanted:
            try:
                return int(fields[4])
            except ValueError:
                return None
    return None


def _command_line(pid, limit=200):
    """The command line of process `pid` (Linux), shortened to `limit` characters; "" if
    unknown."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            command = " ".join(f.read().replace(b"\0", b" ").decode(errors="replace").split())
    except OSError:
        return ""
    return command if len(command) <= limit else command[:limit - 3] + "..."


@contextlib.contextmanager
def hold(folder, log=print):
    """Holds the exclusive lock of run folder `folder` (which must exist) for the `with`
    block; yields the lock file's path. Raises FolderInUseError at once if another process
    has it. Within a `hold` of the same folder by this process it only shares that one's
    lock. Where the file system cannot lock (or the system has no fcntl), logs a warning
    and runs without the lock."""
    path = os.path.join(folder, LOCK_FILE)
    key = os.path.realpath(folder)
    if key in _held:
        _held[key] += 1
        try:
            yield path
        finally:
            _held[key] -= 1
        return
    if fcntl is None:
        log(f"WARNING: this system cannot lock {folder}; make sure no other run uses it.")
        yield path
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:  # a lock file of another user: flock needs no write access
        fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise FolderInUseError(folder, holder_pid(path)) from None
            # ENOLCK, EINVAL, ...: e.g. a network file system without a lock service.
            log(f"WARNING: cannot lock {path} ({e.strerror}); running without the lock: make "
                "sure no other run uses this folder.")
        _held[key] = 1
        try:
            yield path
        finally:
            del _held[key]
    finally:
        os.close(fd)  # drops the lock (if held)
