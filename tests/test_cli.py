import gc
import subprocess
import sys
import types

import pytest

from gan import cli


@pytest.fixture
def restore_gc():
    yield
    gc.unfreeze()  # heavy_imports froze this test process's objects
    gc.enable()


def test_heavy_imports_pause_the_collector_and_keep_ipython_out_while_they_run(
        monkeypatch, restore_gc):
    monkeypatch.delitem(sys.modules, "IPython", raising=False)
    with cli.heavy_imports():
        assert not gc.isenabled()
        with pytest.raises(ImportError):
            import IPython  # noqa: F401
    assert gc.isenabled()
    assert "IPython" not in sys.modules  # importable as usual again


def test_heavy_imports_leave_an_ipython_that_is_already_loaded(monkeypatch, restore_gc):
    notebook = types.ModuleType("IPython")
    monkeypatch.setitem(sys.modules, "IPython", notebook)
    with cli.heavy_imports():
        import IPython
        assert IPython is notebook
    assert sys.modules["IPython"] is notebook


def test_keras_imports_under_heavy_imports_without_ipython():
    code = ("import sys\nfrom gan import cli\nwith cli.heavy_imports():\n"
            "    import keras, tensorflow\n"
            "print('IPython' in sys.modules, keras.layers.Dense(2)(tensorflow.ones([1, 3])).shape)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split("\n")[-2] == "False (1, 2)"


def test_fail_prints_the_message_and_exits_with_the_code(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.fail("--epochs must be positive, got 0", exit_code=3)
    assert exit_info.value.code == 3
    assert capsys.readouterr().err == "error: --epochs must be positive, got 0\n"
