import os

from gan import files


def test_atomic_write_gives_the_usual_permissions(tmp_path):
    files.atomic_write(str(tmp_path / "a.txt"), lambda tmp: open(tmp, "w").write("x"))
    with open(tmp_path / "b.txt", "w") as f:
        f.write("x")
    assert os.stat(tmp_path / "a.txt").st_mode == os.stat(tmp_path / "b.txt").st_mode
