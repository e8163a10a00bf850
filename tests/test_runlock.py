"""One writer per run folder (gan.training.runlock): a real second process, kill -9, read-only
commands."""

import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO, run_cli, start_cli, wait_for_file
from gan.training import runlock

# A process that holds the lock of argv[1], says so on stdout, and keeps it until killed.
HOLDER = """
import sys, time
from gan.training import runlock
with runlock.hold(sys.argv[1]):
    print("held", flush=True)
    time.sleep(600)
"""


@pytest.fixture
def holder(tmp_path):
    """(folder, process): another process holding the lock of `folder`."""
    folder = str(tmp_path / "run")
    os.makedirs(folder)
    process = subprocess.Popen([sys.executable, "-c", HOLDER, folder], cwd=REPO, text=True,
                               stdout=subprocess.PIPE)
    try:
        assert process.stdout.readline().strip() == "held"
        yield folder, process
    finally:
        process.kill()
        process.wait()


def test_a_second_process_is_refused_naming_the_folder_and_the_holder(holder):
    folder, process = holder
    start = time.monotonic()
    with pytest.raises(runlock.FolderInUseError) as error:
        with runlock.hold(folder):
            pytest.fail("took a lock another process holds")
    assert time.monotonic() - start < 1  # at once, no waiting
    assert error.value.pid == process.pid
    message = str(error.value)
    assert f"--checkpoint_dir={folder}" in message
    assert f"process {process.pid} (" in message and "time.sleep(600)" in message  # its command


def test_the_lock_goes_with_its_holder_even_after_kill_9(holder):
    folder, process = holder
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert os.path.exists(os.path.join(folder, runlock.LOCK_FILE))  # left behind, harmless
    with runlock.hold(folder):  # no lock file to delete by hand
        pass


# Exit status 3 if the lock of argv[1] is held by another process, else 0.
TRY_LOCK = """
import sys
from gan.training import runlock
try:
    with runlock.hold(sys.argv[1]):
        pass
except runlock.FolderInUseError:
    sys.exit(3)
"""


def other_process_can_lock(folder):
    code = subprocess.run([sys.executable, "-c", TRY_LOCK, folder], cwd=REPO,
                          timeout=60).returncode
    assert code in (0, 3)
    return code == 0


def test_a_nested_hold_shares_the_lock_which_goes_with_the_outer_one_and_is_never_written(
        tmp_path):
    """gan.train locks before TensorFlow's import and train() again: the inner hold shares
    the outer's lock, and the lock stays until the outer one ends."""
    folder = str(tmp_path)
    with runlock.hold(folder) as path:
        with runlock.hold(folder):
            pass
        assert not other_process_can_lock(folder)  # the inner one's end did not drop it
    stamp = os.stat(path)
    assert other_process_can_lock(folder)
    with runlock.hold(folder):
        pass
    after = os.stat(path)
    assert after.st_size == 0 and after.st_mtime_ns == stamp.st_mtime_ns  # nothing written


def test_an_exception_in_the_block_releases_the_lock(tmp_path):
    with pytest.raises(KeyError):
        with runlock.hold(str(tmp_path)):
            raise KeyError("boom")
    with runlock.hold(str(tmp_path)):
        pass


def test_read_only_commands_work_on_a_locked_folder(generator_checkpoint, tmp_path):
    """gan.sample, gan.evaluate and gan.export read checkpoints through restore_generator
    (and export through export_saved_model), which take no lock, while another process
    holds the folder's."""
    from gan.models import inference
    from gan.training import checkpoints

    folder, _ = generator_checkpoint
    process = subprocess.Popen([sys.executable, "-c", HOLDER, folder], cwd=REPO, text=True,
                               stdout=subprocess.PIPE)
    try:
        assert process.stdout.readline().strip() == "held"
        generator, architecture, step = checkpoints.restore_generator(folder)
        assert step == 5
        inference.export_saved_model(generator, architecture, str(tmp_path / "exported"))
        with pytest.raises(runlock.FolderInUseError):  # still held
            with runlock.hold(folder):
                pass
    finally:
        process.kill()
        process.wait()


@pytest.mark.slow
def test_two_training_runs_on_one_folder(tmp_path, data_dir):
    """A real run holds its --checkpoint_dir: the same command started again exits 2 at once
    naming the folder and the run's process id; gan.sample reads the folder meanwhile; after
    kill -9 of the run the next run takes the folder without any cleaning up."""
    ckpt = tmp_path / "ckpt"
    # A checkpoint every 200 steps (a second or less): gan.sample reads while the run saves
    # new checkpoints and rotates old ones away.
    args = ["--epochs=1000000", "--noxla", "--checkpoint_every=200", "--save_every=200",
            f"--data_dir={data_dir}", f"--image_dir={tmp_path}/img", f"--checkpoint_dir={ckpt}"]
    first = start_cli("gan.train", *args, log_path=tmp_path / "first.log")
    try:
        wait_for_file(ckpt / "ckpt-200.index", first)
        second = run_cli("gan.train", *args, timeout=300)
        assert second.returncode == 2, second.stderr[-3000:]
        assert f"--checkpoint_dir={ckpt} is in use" in second.stderr
        assert f"process {first.pid}" in second.stderr
        assert "Starting at" not in second.stdout and "Resuming" not in second.stdout

        sample = run_cli("gan.sample", f"--checkpoint_dir={ckpt}", "--num=4",
                         f"--out={tmp_path}/samples.png", timeout=300)
        assert sample.returncode == 0, sample.stderr[-3000:]
        assert first.poll() is None  # still training
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    third = run_cli("gan.train", *args[1:], "--epochs=1", timeout=300)
    assert third.returncode == 0, third.stderr[-3000:]
    assert "nothing to do" in third.stdout


def test_a_reader_looks_again_when_a_training_run_rotates_checkpoints_away(
        generator_checkpoint, tmp_path, monkeypatch):
    """While gan.sample reads ckpt-5, the run saves ckpt-6 and deletes ckpt-5: the reader
    finds the new one instead of failing."""
    import shutil

    import tensorflow as tf

    from gan.training import checkpoints

    folder = str(tmp_path / "ckpt")
    shutil.copytree(generator_checkpoint[0], folder)
    read = checkpoints._read_generator
    calls = []

    def rotated_while_reading(prefix):
        calls.append(os.path.basename(prefix))
        if len(calls) == 1:
            for name in os.listdir(folder):
                if name.startswith("ckpt-5."):
                    os.replace(os.path.join(folder, name),
                               os.path.join(folder, name.replace("ckpt-5.", "ckpt-6.")))
            raise tf.errors.NotFoundError(None, None, "Failed to find any matching files")
        return read(prefix)

    monkeypatch.setattr(checkpoints, "_read_generator", rotated_while_reading)
    generator, _, step = checkpoints.restore_generator(folder)
    assert calls == ["ckpt-5", "ckpt-6"] and step == 5  # (the step stored in the files)
