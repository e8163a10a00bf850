"""Every recipe in experiments/*.flags parses with gan.train's flags into a valid config."""

import dataclasses
import glob
import os

import pytest

from conftest import REPO

FLAGFILES = sorted(glob.glob(os.path.join(REPO, "experiments", "*.flags")))


def test_the_recipes_exist():
    names = {os.path.basename(p) for p in FLAGFILES}
    assert {"mlp_tuned.flags", "best_unconditional.flags", "mlp_large.flags", "conditional.flags",
            "original.flags", "fashion_mnist.flags", "stacked_mnist.flags"} <= names


@pytest.mark.parametrize("path", FLAGFILES, ids=os.path.basename)
def test_flagfile_parses_into_a_valid_config(path, train_flags, tmp_path):
    config = train_flags(f"--flagfile={path}")
    dataclasses.replace(config, image_dir=str(tmp_path / "i"),
                        checkpoint_dir=str(tmp_path / "c")).validate()
    # Each recipe writes to its own folders, so one recipe never resumes another's run.
    name = os.path.splitext(os.path.basename(path))[0]
    assert name in config.checkpoint_dir and name in config.image_dir
    # Flags after the flagfile still win (e.g. a shorter run to try it).
    assert train_flags(f"--flagfile={path}", "--epochs=7").epochs == 7


ABLATIONS = sorted(glob.glob(os.path.join(REPO, "experiments", "ablations", "*.flags")))


@pytest.mark.parametrize("path", ABLATIONS, ids=os.path.basename)
def test_ablation_arm_parses_into_a_valid_config(path, train_flags, tmp_path):
    """An ablation arm is a recipe gan.study runs (it sets each cell's folders itself)."""
    config = train_flags(f"--flagfile={path}")
    dataclasses.replace(config, image_dir=str(tmp_path / "i"),
                        checkpoint_dir=str(tmp_path / "c")).validate()
