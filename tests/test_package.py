"""Environment the package sets up before TensorFlow is imported."""

import os
import subprocess
import sys

from conftest import REPO

PRINT_FLAGS = "import gan, os; print(os.environ.get('TF_XLA_FLAGS'))"


def flags_with(**env):
    base = {k: v for k, v in os.environ.items() if k not in ("TF_XLA_FLAGS", "GAN_XLA_CACHE")}
    out = subprocess.run([sys.executable, "-c", PRINT_FLAGS], cwd=REPO, env={**base, **env},
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_xla_compilation_cache_goes_to_the_gan_cache_dir(tmp_path):
    flags = flags_with(GAN_CACHE_DIR=str(tmp_path))
    assert flags == f"--tf_xla_persistent_cache_directory={tmp_path}/xla"


def test_xla_cache_can_be_turned_off_and_user_flags_are_kept(tmp_path):
    assert flags_with(GAN_XLA_CACHE="0") == "None"
    mine = "--tf_xla_persistent_cache_directory=/somewhere --xla_foo"
    assert flags_with(TF_XLA_FLAGS=mine) == mine
    assert flags_with(TF_XLA_FLAGS="--xla_foo", GAN_CACHE_DIR=str(tmp_path)) == (
        f"--xla_foo --tf_xla_persistent_cache_directory={tmp_path}/xla")
