import gc
import subprocess
import sys

import pytest

from gan import cli


@pytest.fixture
def restore_gc():
    yield
    gc.unfreeze()  # heavy_imports froze this test process's objects
    gc.enable()


def test_heavy_imports_pause_the_collector_and_freeze_what_they_import(restore_gc):
    with cli.heavy_imports():
        assert not gc.isenabled()
        made_inside = [object() for _ in range(3)]
    assert gc.isenabled()
    assert gc.get_freeze_count() >= len(made_inside)


def test_keras_imports_under_heavy_imports():
    code = ("from gan import cli\nwith cli.heavy_imports():\n"
            "    import keras, tensorflow\n"
            "print(keras.layers.Dense(2)(tensorflow.ones([1, 3])).shape)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split("\n")[-2] == "(1, 2)"


def test_fail_prints_the_message_and_exits_with_the_code(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.fail("--epochs must be positive, got 0", exit_code=3)
    assert exit_info.value.code == 3
    assert capsys.readouterr().err == "error: --epochs must be positive, got 0\n"
