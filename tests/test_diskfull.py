"""A full disk while writing a checkpoint, an image, a log or the GIF: one clear error
(files.DiskFullError), the newest complete checkpoint intact, nothing partial or temporary
left, and the rerun resumes. Most tests make writes fail with ENOSPC at a chosen call, so
they run anywhere; the last one fills a real tiny file system where the system allows it."""

import errno
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import conftest
from conftest import REPO, checkpoint_tensors
from gan import files, images
from gan.training import checkpoints, monitor, run as train_lib
from gan.config import TrainConfig

def enospc(path=None):
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)


# TensorFlow's error for a full disk in a checkpoint save, as seen on a full tmpfs.
TF_DISK_FULL = ("{{function_node __wrapped__SaveV2_dtypes_34_device_/job:localhost/replica:0/"
                "task:0/device:CPU:0}} {}_temp/part-00000-of-00001.data-00000-of-00001."
                "tempstate6934507378561326780; No space left on device [Op:SaveV2]")


def test_disk_full_errors_are_told_apart():
    assert files.is_disk_full(enospc())
    assert files.is_disk_full(OSError(errno.EDQUOT, os.strerror(errno.EDQUOT)))
    assert files.is_disk_full(tf.errors.ResourceExhaustedError(None, None,
                                                               TF_DISK_FULL.format("/c/ckpt-3")))
    # The same class also means out of memory: not a full disk.
    assert not files.is_disk_full(tf.errors.ResourceExhaustedError(
        None, None, "OOM when allocating tensor with shape[1024,1024]"))
    assert not files.is_disk_full(OSError(errno.EACCES, "Permission denied"))
    assert not files.is_disk_full(ValueError("No space left on device"))


def test_the_message_says_what_where_and_how_much(tmp_path):
    error = files.DiskFullError("the image", str(tmp_path / "img" / "a.png"), needed=12_345)
    assert isinstance(error, OSError) and error.errno == errno.ENOSPC
    message = str(error)
    assert message.startswith(f"no space left on device while writing the image to "
                              f"{tmp_path}/img/a.png (it needs about 12.3 KB, ")
    assert "free there)" in message and message.endswith("run the same command again.")
    assert error.strerror == message  # what `except OSError as e: ... e.strerror` shows


def test_an_image_write_on_a_full_disk_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "generated_0.png"
    images.save_png(np.zeros((4, 4), np.uint8), str(path))
    before = path.read_bytes()
    full_disk_at(monkeypatch, ".png", call=1)
    with pytest.raises(files.DiskFullError) as error:
        images.save_png(np.full((100, 1000), 200, np.uint8), str(path))
    assert f"writing the image to {path} (it needs about " in str(error.value)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["generated_0.png"]  # no temporary file


def test_tensorboard_events_on_a_full_disk(tmp_path, monkeypatch):
    config = TrainConfig(checkpoint_dir=str(tmp_path), epochs=10)
    with monitor.RunMonitor(config, 0, log=lambda s: None) as run_monitor:
        def full(*args):
            raise tf.errors.ResourceExhaustedError(
                None, None, f"{tmp_path}/logs/events.out; No space left on device\n\t"
                "Could not flush events file. [Op:WriteSummary]")

        monkeypatch.setattr(run_monitor, "_scalar_summaries", full)
        with pytest.raises(files.DiskFullError, match="the TensorBoard events to .*/logs"):
            run_monitor.write_scalars(1, {"d_loss": 1.0})


# --- writes that fail at a chosen call ------------------------------------------------------


def full_disk_at(monkeypatch, suffix, call, delay=0.0):
    """The disk is full from the `call`-th (1-based) atomic write of a file ending in
    `suffix` on: the write function writes a few bytes, waits `delay` seconds (a slow
    disk: the training loop runs on meanwhile), then fails with ENOSPC."""
    real, count = files.atomic_write, [0]

    def atomic_write(path, write_fn, *args, **kwargs):
        if str(path).endswith(suffix):
            count[0] += 1
            if count[0] >= call:
                def write_fn(tmp):
                    with open(tmp, "wb") as f:
                        f.write(b"partial")
                    time.sleep(delay)
                    raise enospc(tmp)
        return real(path, write_fn, *args, **kwargs)

    monkeypatch.setattr(files, "atomic_write", atomic_write)


def full_checkpoint_disk_at(monkeypatch, call):
    """The `call`-th checkpoint save fails as TensorFlow's does on a full disk: it leaves a
    ckpt-<step>_temp folder and an empty ckpt-<step>.index, and raises
    ResourceExhaustedError."""
    real, count = tf.train.CheckpointManager.save, [0]

    def save(manager, checkpoint_number=None, **kwargs):
        count[0] += 1
        if count[0] < call:
            return real(manager, checkpoint_number=checkpoint_number, **kwargs)
        prefix = os.path.join(manager.directory, f"ckpt-{checkpoint_number}")
        os.makedirs(prefix + "_temp")
        open(os.path.join(prefix + "_temp", "part-00000-of-00001.index"), "wb").close()
        open(prefix + ".index", "wb").close()
        raise tf.errors.ResourceExhaustedError(None, None, TF_DISK_FULL.format(prefix))

    monkeypatch.setattr(tf.train.CheckpointManager, "save", save)


class FullHistoryFile:
    """A metrics.jsonl opened for appending whose `fail_at`-th write finds the disk full
    after half the line, `delay` seconds later."""

    def __init__(self, file, fail_at, delay):
        self._file, self._writes, self._fail_at, self._delay = file, 0, fail_at, delay

    def write(self, text):
        self._writes += 1
        if self._writes >= self._fail_at:
            self._file.write(text[:len(text) // 2])
            self._file.flush()
            time.sleep(self._delay)
            raise enospc(self._file.name)
        return self._file.write(text)

    def flush(self):
        self._file.flush()

    def close(self):
        self._file.close()


def full_history_disk_at(monkeypatch, call, delay=0.0):
    def open_history(path, mode="r", *args, **kwargs):
        f = open(path, mode, *args, **kwargs)
        return FullHistoryFile(f, call, delay) if mode == "a" else f

    monkeypatch.setattr(monitor, "open", open_history, raising=False)


tiny_config = conftest.tiny_configs(epochs=80, checkpoint_every=20, save_every=20,
                                    steps_per_call=10, seed=3)


def history_steps(config):
    path = os.path.join(config.resolved_logs_dir(), monitor.HISTORY_FILE)
    return [record["step"] for record in monitor.read_history(path)]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, data_dir):
    """(tensors of ckpt-80, steps of metrics.jsonl) of the run without faults."""
    config = tiny_config(tmp_path_factory.mktemp("uninterrupted"), data_dir)
    train_lib.train(config, log=lambda s: None)
    return (checkpoint_tensors(os.path.join(config.checkpoint_dir, "ckpt-80")),
            history_steps(config))


# What fills the disk: (how, what the message names, the newest checkpoint kept). Image and
# log writes fail 1 s late (the loop would save ckpt-60 meanwhile): the save waits for them.
FAULTS = {
    "checkpoint": (lambda mp: full_checkpoint_disk_at(mp, call=3), "checkpoint ckpt-60", 40),
    # generated_40.png is due after step 41.
    "image": (lambda mp: full_disk_at(mp, ".png", call=3, delay=1), "the image", 40),
    # lines at steps 1, 11, 20, 21, 31, 40, 41, 51, ... (chunks end at strips and
    # checkpoints): the 8th, step 51's, fails.
    "log": (lambda mp: full_history_disk_at(mp, call=8, delay=1), "the metrics history", 40),
    "gif": (lambda mp: full_disk_at(mp, ".gif", call=1), "the animated GIF", 80),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_full_disk_stops_the_run_and_the_rerun_resumes(
        fault, tmp_path, data_dir, monkeypatch, uninterrupted):
    config = tiny_config(tmp_path, data_dir)
    fill, what, kept = FAULTS[fault]
    fill(monkeypatch)
    with pytest.raises(files.DiskFullError) as error:
        train_lib.train(config, log=lambda s: None)
    assert f"no space left on device while writing {what} to " in str(error.value)
    assert checkpoints.list_checkpoints(config.checkpoint_dir)[0].endswith(f"ckpt-{kept}")
    leftovers = [os.path.join(root, name) for root, dirs, names in os.walk(tmp_path)
                 for name in dirs + names if "_temp" in name or name.startswith(".tmp-")]
    assert leftovers == []
    for name in os.listdir(config.image_dir):  # every image whole
        with Image.open(os.path.join(config.image_dir, name)) as image:
            image.verify()

    monkeypatch.undo()  # space freed
    logs = []
    train_lib.train(config, log=logs.append)
    if kept < config.epochs:
        assert f"Resuming from step {kept}; training to 80 epochs" in "\n".join(logs)
    else:
        assert any("nothing to do" in line for line in logs)
    # The same weights, data position and noise state as without the fault; every image;
    # the history without a torn, missing or repeated line.
    tensors, steps = uninterrupted
    final = checkpoint_tensors(os.path.join(config.checkpoint_dir, "ckpt-80"))
    assert final.keys() == tensors.keys()
    for name, value in tensors.items():
        if name != "_CHECKPOINTABLE_OBJECT_GRAPH":  # names Keras numbers per process
            assert np.array_equal(final[name], value), name
    assert sorted(os.listdir(config.image_dir)) == sorted(
        f"generated_{e}.png" for e in range(0, 80, 20))
    assert history_steps(config) == steps


# --- a real tiny file system ----------------------------------------------------------------

# Run inside a private mount namespace: a tmpfs of 8 MB holds one checkpoint of the default
# model (5.2 MB) but not two. Train until the disk is full, list what is left, make the
# file system larger ("free space"), rerun the same command. $PYTHON is this test's own
# interpreter: a bare `python` from PATH may be another one, without this package's deps.
TINY_FS_SCRIPT = """
set -u
mount -t tmpfs -o size=8m tmpfs "$RUN"
"$PYTHON" -m gan.train $ARGS > "$OUT/first.log" 2>&1; echo $? > "$OUT/first.rc"
(cd "$RUN" && find . | sort) > "$OUT/files.txt"
mount -o remount,size=64m "$RUN"
"$PYTHON" -m gan.train $ARGS > "$OUT/second.log" 2>&1; echo $? > "$OUT/second.rc"
(cd "$RUN" && find . | sort) > "$OUT/files_after.txt"
"""


def tiny_fs_available():
    if not shutil.which("unshare"):
        return False
    try:
        return subprocess.run(["unshare", "-rm", "true"], capture_output=True,
                              timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@pytest.mark.slow
@pytest.mark.skipif(not tiny_fs_available(), reason="no unprivileged mount namespaces here")
def test_a_real_full_file_system(tmp_path, data_dir):
    run, out = tmp_path / "run", tmp_path / "out"
    run.mkdir()
    out.mkdir()
    args = (f"--epochs=300 --checkpoint_every=100 --save_every=100 --noxla "
            f"--data_dir={data_dir} --checkpoint_dir={run}/ckpt --image_dir={run}/img")
    env = dict(os.environ, RUN=str(run), OUT=str(out), ARGS=args, PYTHON=sys.executable,
               TF_CPP_MIN_LOG_LEVEL="2")
    subprocess.run(["unshare", "-rm", "sh", "-c", TINY_FS_SCRIPT], cwd=REPO, env=env,
                   check=True, timeout=600)
    first = (out / "first.log").read_text()
    assert (out / "first.rc").read_text().strip() == "2", first[-3000:]
    assert (f"error: no space left on device while writing checkpoint ckpt-200 to {run}/ckpt "
            "(it needs about 5.2 MB, ") in first
    assert ("Removed what the save left (ckpt-200_temp). Free some space and run the same "
            f"command again. It resumes from the newest complete checkpoint, {run}/ckpt/ckpt-100."
            ) in first
    assert "Traceback" not in first
    left = (out / "files.txt").read_text().split()
    assert "./ckpt/ckpt-100.index" in left
    assert not [name for name in left if "ckpt-200" in name or ".tmp" in name]

    second = (out / "second.log").read_text()
    assert (out / "second.rc").read_text().strip() == "0", second[-3000:]
    assert "Resuming from step 100" in second
    assert "./ckpt/ckpt-300.index" in (out / "files_after.txt").read_text().split()
