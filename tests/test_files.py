"""Output files are written atomically: a killed process leaves no truncated file."""

import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import REPO
from gan import files, images

# A child that starts rewriting `path` through atomic_write, writes half of it, and is
# killed with SIGKILL in the middle: what a kill -9 during an image write looks like.
KILLED_WRITER = """
import os, signal, sys
from gan import files

def half_then_die(tmp):
    with open(tmp, "wb") as f:
        f.write(open(sys.argv[1], "rb").read()[:100])
        f.flush()
    os.kill(os.getpid(), signal.SIGKILL)

files.atomic_write(sys.argv[1], half_then_die)
"""


def test_atomic_write_gives_the_usual_permissions(tmp_path):
    files.atomic_write(str(tmp_path / "a.txt"), lambda tmp: open(tmp, "w").write("x"))
    with open(tmp_path / "b.txt", "w") as f:
        f.write("x")
    assert os.stat(tmp_path / "a.txt").st_mode == os.stat(tmp_path / "b.txt").st_mode


def test_a_kill_during_a_png_write_leaves_the_previous_file_whole(tmp_path):
    path = tmp_path / "generated_0.png"
    images.save_strip(np.random.default_rng(0).uniform(0, 1, (10, 28, 28)), str(path))
    before = path.read_bytes()
    child = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(path)], cwd=REPO,
                           capture_output=True, timeout=120)
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()[-2000:]
    assert path.read_bytes() == before
    with Image.open(path) as im:
        im.verify()  # a complete, valid PNG
    # Beside it at most the hidden temporary file the kill left behind.
    assert [n for n in os.listdir(tmp_path) if not n.startswith(".tmp-")] == ["generated_0.png"]


def test_a_failed_write_leaves_no_file_and_no_temporary(tmp_path):
    def fail(tmp):
        open(tmp, "wb").write(b"\x89PNG half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        files.atomic_write(str(tmp_path / "generated_100.png"), fail)
    assert os.listdir(tmp_path) == []
