"""End to end: `python -m gan.train` and `python -m gan.data` as a user runs them."""

import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from conftest import (REPO, checkpoint_tensors, file_snapshot, run_cli, start_cli,
                      tiny_config, wait_for_file)

@pytest.mark.slow
def test_train_writes_images_and_checkpoints_then_resumes(tmp_path, data_dir):
    args = [f"--data_dir={data_dir}", f"--image_dir={tmp_path}/img",
            f"--checkpoint_dir={tmp_path}/ckpt", "--checkpoint_every=100",
            "--noxla"]  # XLA's part is tests/test_compilation.py's
    first = run_cli("gan.train", "--epochs=250", *args)
    assert first.returncode == 0, first.stderr[-3000:]
    names = sorted(os.listdir(tmp_path / "img"))
    assert names == ["generated_0.png", "generated_100.png", "generated_200.png"]
    with Image.open(tmp_path / "img" / "generated_100.png") as im:
        assert im.size == (1000, 100)  # a 10 x 1 inch figure at 100 dpi
    assert (tmp_path / "ckpt" / "ckpt-250.index").exists()
    assert (tmp_path / "ckpt" / "ckpt-200.index").exists()
    before = (tmp_path / "img" / "generated_200.png").stat().st_mtime_ns

    second = run_cli("gan.train", "--epochs=320", *args)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "Resuming from step 250" in second.stdout
    assert sorted(os.listdir(tmp_path / "img"))[-1] == "generated_300.png"
    assert (tmp_path / "img" / "generated_200.png").stat().st_mtime_ns == before  # not redone

    before = file_snapshot(tmp_path)
    third = run_cli("gan.train", "--epochs=320", *args)
    assert third.returncode == 0
    assert "nothing to do" in third.stdout
    assert file_snapshot(tmp_path) == before  # not a byte nor a timestamp changed


# `python -m gan.train` in a process whose name lookups all fail: offline, whatever the
# machine's network.
OFFLINE = """
import runpy, socket, sys
def no_network(*args, **kwargs):
    raise socket.gaierror(socket.EAI_NONAME, "no network (the test's)")
socket.getaddrinfo = no_network
runpy.run_module("gan.train", run_name="__main__", alter_sys=True)
"""


@pytest.mark.slow
def test_missing_data_offline_fails_fast_with_a_clear_message(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    # TFDS's retries would outlast the timeout (minutes); tests/test_data.py times the check
    result = subprocess.run(
        [sys.executable, "-c", OFFLINE, "--epochs=10", f"--data_dir={tmp_path}/none",
         f"--checkpoint_dir={tmp_path}/c", f"--image_dir={tmp_path}/i"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 2, result.stderr[-3000:]
    assert f"{tmp_path}/none" in result.stderr
    assert "--prepare_from" in result.stderr and "TFDS_DATA_DIR" in result.stderr
    assert not os.path.exists(tmp_path / "c" / "checkpoint")


BAD_FLAGS = ["--epochs=0", "--batch_size=-1", "--save_every=0", "--model=resnet",
             "--dataset=cifar10", "--clusters=1", "--clusters=-3", "--diversity=-1",
             "--aux_classifier=0.5", "--image_dir={tmp}/a_file/images", "--checkpoint_dir={tmp}/a_file/ckpt"]


@pytest.mark.parametrize("flag", BAD_FLAGS)
def test_bad_flags_are_refused_naming_the_flag_before_anything_is_written(
        tmp_path, monkeypatch, train_flags, flag):
    """What `python -m gan.train` does with them, in this process: train() raises
    ValueError naming the flag (its main turns that into `error: ...`, exit 2) before any
    checkpoint, image or data is touched."""
    from gan.datasets import load as data
    from gan.training import run as train_lib

    (tmp_path / "a_file").write_text("a file, so no folder can be made under it")
    flag = flag.format(tmp=tmp_path)
    config = train_flags(f"--checkpoint_dir={tmp_path}/c", f"--image_dir={tmp_path}/i",
                         f"--data_dir={tmp_path}/no_data", flag)
    monkeypatch.setattr(data, "ensure_available", lambda *a: pytest.fail("data was read"))
    with pytest.raises(ValueError) as error:
        train_lib.train(config, log=pytest.fail)
    assert str(error.value).startswith(flag.split("=")[0])
    assert not os.path.exists(tmp_path / "c" / "checkpoint")
    assert not os.path.exists(tmp_path / "i") or not os.listdir(tmp_path / "i")


@pytest.mark.slow
def test_a_bad_flag_exits_2_with_the_error_on_stderr(tmp_path):
    result = run_cli("gan.train", "--epochs=0", f"--checkpoint_dir={tmp_path}/c",
                     f"--image_dir={tmp_path}/i", timeout=120)
    assert result.returncode == 2
    assert "error: --epochs must be positive, got 0" in result.stderr
    assert not os.path.exists(tmp_path / "c" / "checkpoint")


@pytest.mark.slow
def test_prepare_command_rejects_a_folder_without_idx_files(tmp_path):
    result = run_cli("gan.data", f"--prepare_from={tmp_path}", f"--data_dir={tmp_path}/out",
                     timeout=120)
    assert result.returncode != 0
    assert "train-images-idx3-ubyte" in result.stderr


@pytest.mark.slow
def test_nan_loss_exits_2_naming_the_epoch_and_saves_nothing_non_finite(tmp_path, data_dir):
    from gan.training import checkpoints, run as train_lib

    # No XLA (tiny_config's default): the NaN guard is under test, not XLA.
    config = tiny_config(tmp_path, data_dir, epochs=100, checkpoint_every=50, save_every=50,
                         steps_per_call=10)
    train_lib.train(config, log=lambda s: None)  # 100 good epochs, checkpoints 50 and 100
    # The same run continued with a learning rate whose first Adam steps overflow float32.
    result = run_cli("gan.train", "--epochs=300", "--checkpoint_every=50", "--save_every=50",
                     "--steps_per_call=10", f"--data_dir={data_dir}",
                     f"--image_dir={config.image_dir}", f"--checkpoint_dir={config.checkpoint_dir}",
                     "--g_learning_rate=1e30", "--d_learning_rate=1e30", "--noxla")
    assert result.returncode == 2, result.stderr[-3000:]
    match = re.search(r"error: non-finite loss at epoch (\d+)", result.stderr)
    assert match, result.stderr[-3000:]
    assert 100 <= int(match.group(1)) < 150  # before the next checkpoint was due
    prefixes = checkpoints.list_checkpoints(config.checkpoint_dir)
    assert [p.rsplit("-", 1)[1] for p in prefixes] == ["100", "50"]
    for prefix in prefixes:
        for name, value in checkpoint_tensors(prefix).items():
            if np.issubdtype(np.asarray(value).dtype, np.floating):
                assert np.isfinite(value).all(), (prefix, name)


# --- kill -9 at any moment: the same command again ends where an uninterrupted run ends ---

KILL_RUN = ["--epochs=400", "--checkpoint_every=50", "--save_every=50", "--steps_per_call=10",
            "--seed=3", "--deterministic", "--log_every_secs=1000",
            "--noxla"]  # resuming is under test; XLA's cache is test_compilation.py's


def kill_run_args(folder, data_dir):
    return [*KILL_RUN, f"--data_dir={data_dir}", f"--image_dir={folder}/img",
            f"--checkpoint_dir={folder}/ckpt"]


def newest_complete_checkpoint(folder):
    """(the highest step whose checkpoint reads back, the highest step with an index file).
    TensorFlow writes the index last, but not atomically: a kill while it is being written
    leaves a short one, which the next run must skip with a warning."""
    import tensorflow as tf

    steps = sorted((int(m.group(1)) for m in map(re.compile(r"ckpt-(\d+)\.index$").match,
                                                 os.listdir(folder)) if m), reverse=True)
    for step in steps:
        try:
            tf.train.load_checkpoint(str(folder / f"ckpt-{step}"))
            return step, steps[0]
        except (tf.errors.OpError, ValueError):
            continue
    return 0, max(steps, default=0)


def pngs(folder):
    """{name: bytes} of the generated images (not hidden temporary files)."""
    return {name: (folder / name).read_bytes() for name in os.listdir(folder)
            if name.startswith("generated_")}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, data_dir):
    folder = tmp_path_factory.mktemp("uninterrupted")
    result = run_cli("gan.train", *kill_run_args(folder, data_dir))
    assert result.returncode == 0, result.stderr[-3000:]
    return folder


# What to wait for before the kill, and how long after: just after a checkpoint's index
# appears (the state file may not list it yet), in the middle of a compiled chunk, and just
# after an image was written.
KILL_POINTS = [("ckpt/ckpt-100.index", 0.0), ("ckpt/ckpt-200.index", 0.03),
               ("img/generated_300.png", 0.0)]


@pytest.mark.slow
def test_kill_9_at_three_points_then_rerun_ends_bit_identical(tmp_path, data_dir,
                                                              uninterrupted):
    args = kill_run_args(tmp_path, data_dir)
    resumed_from, damaged = 0, False
    for i, (path, delay) in enumerate(KILL_POINTS):
        process = start_cli("gan.train", *args, log_path=tmp_path / f"log{i}")
        try:
            wait_for_file(tmp_path / path, process)
            time.sleep(delay)
            assert process.poll() is None, "the run ended before the kill"
            process.kill()
            assert process.wait(timeout=60) == -signal.SIGKILL
        finally:
            if process.poll() is None:
                process.kill()
        output = (tmp_path / f"log{i}").read_text()
        if resumed_from:
            assert f"Resuming from step {resumed_from};" in output, output[-3000:]
        if damaged:
            assert "skipped damaged checkpoint" in output, output[-3000:]
        resumed_from, newest = newest_complete_checkpoint(tmp_path / "ckpt")
        damaged = newest > resumed_from  # killed while the index was being written
        assert resumed_from >= int(re.search(r"(\d+)\.", path).group(1)) or damaged

    final = run_cli("gan.train", *args)
    assert final.returncode == 0, final.stderr[-3000:]
    assert f"Resuming from step {resumed_from};" in final.stdout  # nothing older, never 0
    expected = checkpoint_tensors(str(uninterrupted / "ckpt" / "ckpt-400"))
    got = checkpoint_tensors(str(tmp_path / "ckpt" / "ckpt-400"))
    assert expected.keys() == got.keys()
    for name in expected:  # weights, Adam slots, step, noise generator state, save counter
        assert np.array_equal(expected[name], got[name]), name
    assert len(pngs(uninterrupted / "img")) == 8
    assert pngs(tmp_path / "img") == pngs(uninterrupted / "img")  # all 8, none truncated
