"""Environment the package sets up before TensorFlow is imported."""

import os
import subprocess
import sys

from conftest import REPO

PRINT_LEVEL = "import gan, os; print(os.environ.get('TF_CPP_MIN_LOG_LEVEL'))"


def log_level_with(**env):
    base = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    out = subprocess.run([sys.executable, "-c", PRINT_LEVEL], cwd=REPO, env={**base, **env},
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_tensorflow_start_up_chatter_is_quiet_unless_the_user_says_otherwise():
    assert log_level_with() == "2"
    assert log_level_with(TF_CPP_MIN_LOG_LEVEL="0") == "0"
