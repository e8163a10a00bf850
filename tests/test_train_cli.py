"""End to end: `python -m gan.train` and `python -m gan.data` as a user runs them."""

import os

import pytest
from PIL import Image

from conftest import run_cli

pytestmark = pytest.mark.slow


def test_train_writes_images_and_checkpoints_then_resumes(tmp_path, data_dir):
    args = [f"--data_dir={data_dir}", f"--image_dir={tmp_path}/img",
            f"--checkpoint_dir={tmp_path}/ckpt", "--checkpoint_every=100"]
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

    third = run_cli("gan.train", "--epochs=320", *args)
    assert third.returncode == 0
    assert "nothing to do" in third.stdout


def test_missing_data_offline_fails_fast_with_a_clear_message(tmp_path):
    from gan import data

    if data.network_reachable():
        pytest.skip("the network is reachable: TFDS would download instead of failing")
    result = run_cli("gan.train", "--epochs=10", f"--data_dir={tmp_path}/none",
                     f"--checkpoint_dir={tmp_path}/c", f"--image_dir={tmp_path}/i", timeout=60)
    assert result.returncode != 0
    assert f"{tmp_path}/none" in result.stderr
    assert "--prepare_from" in result.stderr


@pytest.mark.parametrize("flag", ["--epochs=0", "--batch_size=-1", "--save_every=0",
                                  "--model=resnet", "--dataset=cifar10"])
def test_bad_flags_exit_non_zero_naming_the_flag(tmp_path, flag):
    result = run_cli("gan.train", flag, f"--checkpoint_dir={tmp_path}/c",
                     f"--image_dir={tmp_path}/i", timeout=120)
    assert result.returncode != 0
    assert flag.split("=")[0] in result.stderr
    assert not os.path.exists(tmp_path / "c" / "checkpoint")


def test_prepare_command_rejects_a_folder_without_idx_files(tmp_path):
    result = run_cli("gan.data", f"--prepare_from={tmp_path}", f"--data_dir={tmp_path}/out",
                     timeout=120)
    assert result.returncode != 0
    assert "train-images-idx3-ubyte" in result.stderr


def test_help_says_what_an_epoch_is():
    result = run_cli("gan.train", "--helpfull", timeout=120)
    assert "ONE 'epoch' is one iteration on one batch" in " ".join(result.stdout.split())
