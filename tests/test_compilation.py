"""gan.training.compilation: XLA's CPU flag and its persistent compilation cache."""

import os
import subprocess
import sys

import numpy as np
import pytest

from gan.training import compilation
from conftest import REPO, checkpoint_tensors, run_cli


@pytest.fixture
def fresh_cache_state(monkeypatch):
    """An empty TF_XLA_FLAGS (restored afterwards, also if the test sets it), and no cache
    remembered by an earlier enable_cache of this process."""
    monkeypatch.setenv("TF_XLA_FLAGS", "")
    monkeypatch.setattr(compilation, "_active_cache", None)


def test_configure_cpu_adds_its_flag_once_and_respects_the_users(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_dump_to=/tmp/x")
    compilation.configure_cpu()
    compilation.configure_cpu()
    assert os.environ["XLA_FLAGS"] == "--xla_dump_to=/tmp/x " + compilation.CPU_FLAG
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=true")
    compilation.configure_cpu()
    assert os.environ["XLA_FLAGS"] == "--xla_cpu_multi_thread_eigen=true"


def test_cache_prefix_names_the_tensorflow_cpu_and_xla_flags_it_was_compiled_for(monkeypatch):
    import tensorflow as tf

    monkeypatch.setenv("XLA_FLAGS", compilation.CPU_FLAG)
    monkeypatch.setenv("TF_XLA_FLAGS", "")
    here = compilation.machine_description()
    assert f"tensorflow-{tf.__version__}.dist-info" in here
    assert compilation.CPU_FLAG in here
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=true")
    assert compilation.cache_prefix(compilation.machine_description()) != (
        compilation.cache_prefix(here))
    prefix = compilation.cache_prefix(here)
    assert prefix == compilation.cache_prefix(here)
    assert prefix.startswith("gan-") and prefix[4:].isalnum()
    assert compilation.cache_prefix(here.replace("tensorflow", "tensorflow 0.0 of")) != prefix
    assert compilation.cache_prefix(here + " avx512f") != prefix


def test_enable_cache_points_tensorflow_at_the_folder(tmp_path, fresh_cache_state):
    folder = str(tmp_path / "xla")
    assert compilation.enable_cache(folder, log=pytest.fail) == folder
    assert os.path.isdir(folder) and os.listdir(folder) == []  # its write probe is gone
    flags = os.environ["TF_XLA_FLAGS"].split()
    flags_set = os.environ["TF_XLA_FLAGS"]
    os.environ["TF_XLA_FLAGS"] = ""  # the description before the cache's own flags
    prefix = compilation.cache_prefix(compilation.machine_description())
    os.environ["TF_XLA_FLAGS"] = flags_set
    assert f"--tf_xla_persistent_cache_directory={folder}" in flags
    assert f"--tf_xla_persistent_cache_prefix={prefix}" in flags
    assert "--tf_xla_persistent_cache_device_types=CPU" in flags
    assert compilation.active_cache() == folder


def test_enable_cache_respects_a_users_cache_and_skips_an_unwritable_folder(
        tmp_path, monkeypatch, fresh_cache_state):
    monkeypatch.setenv("TF_XLA_FLAGS", "--tf_xla_persistent_cache_directory=/mine")
    assert compilation.enable_cache(str(tmp_path / "xla"), log=pytest.fail) is None
    assert os.environ["TF_XLA_FLAGS"] == "--tf_xla_persistent_cache_directory=/mine"
    assert not os.path.exists(tmp_path / "xla")

    monkeypatch.setenv("TF_XLA_FLAGS", "")
    (tmp_path / "file").write_text("")
    notes = []
    assert compilation.enable_cache(str(tmp_path / "file" / "xla"), log=notes.append) is None
    assert os.environ["TF_XLA_FLAGS"] == "" and compilation.active_cache() is None
    assert len(notes) == 1 and "compilation cache is off" in notes[0]
    assert str(tmp_path / "file" / "xla") in notes[0]


def test_clear_cache_removes_only_the_entries_of_the_cache_in_use(tmp_path, fresh_cache_state):
    assert compilation.clear_cache() == 0  # no cache in use: nothing to remove
    compilation.enable_cache(str(tmp_path), log=pytest.fail)
    prefix = os.environ["TF_XLA_FLAGS"].split("--tf_xla_persistent_cache_prefix=")[1].split()[0]
    for name in (f"{prefix}__1__2__XLA_CPU_JIT.pb", f"{prefix}__3__4__XLA_CPU_JIT.pb",
                 "gan-0123456789abcdef__1__2__XLA_CPU_JIT.pb", "notes.txt"):
        (tmp_path / name).write_text("x")
    assert compilation.clear_cache() == 2
    assert sorted(os.listdir(tmp_path)) == ["gan-0123456789abcdef__1__2__XLA_CPU_JIT.pb",
                                            "notes.txt"]


# Writes to fd 2 at the C level (os.write, as TensorFlow's C++ logging does) inside
# quiet_cache_messages, also from a second thread and when the block raises, and through a
# buffered sys.stderr; stdout gets whether fd 2 is the same file after, and how many threads
# run at the end (the reader gone).
_FD2_WRITER = r"""
import os, sys, threading
from gan.training import compilation
def write(text):
    os.write(2, text.encode())
harmless = [line.decode() for line in (
    b"E0000 00:00:1.0   29414 text_format.cc:378] Error parsing text-format "
    b"tensorflow.XlaSerializedCacheEntry: 2:1: Expected identifier, got: 7\n",
    b"E0000 00:00:1.1   29414 cpu_aot_loader.cc:220] Loading XLA:CPU AOT result. Target machine "
    b"feature +prefer-no-scatter is not  supported on the host machine. [+avx] vs [avx]\n")]
identity = lambda: tuple(os.fstat(2)[1:3])
before = identity()
sys.stderr = open(2, "w", closefd=False)  # a buffered one: what it holds must go out in order
sys.stderr.write("before\n")
with compilation.quiet_cache_messages():
    write(harmless[0])
    write("E0000 real.cc:1] a real error\n" + harmless[1] + "kept after two dropped\n")
    write("a line in ")
    write("two writes\n")
    write("E0000 cpu_aot_loader.cc:220] Loading XLA:CPU AOT result. Target machine feature "
          "+avx512f is not supported on the host machine.\n")  # an instruction set: kept
    thread = threading.Thread(target=lambda: [write(f"{i}\n" + harmless[i % 2])
                                              for i in range(20000)])
    thread.start(); thread.join()
    write("no newline")
    sys.stderr.write(" at the end")  # Python's buffer: flushed into the filter on exit
write("|after\n")
try:
    with compilation.quiet_cache_messages():
        write(harmless[1] + "raised")
        raise KeyError
except KeyError:
    write("|caught\n")
print(before == identity(), threading.active_count())
"""


def test_quiet_cache_messages_drops_only_the_harmless_lines_of_fd_2():
    """Lines written to fd 2 in the block: those of the cache's known messages are dropped,
    every other one comes out whole and in order (20,000 lines, more than a pipe holds, from
    another thread; a line in two writes; an unended last line, also when the block raises);
    fd 2 is restored and the reader thread gone."""
    result = subprocess.run([sys.executable, "-c", _FD2_WRITER], cwd=REPO, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    expected = ("before\nE0000 real.cc:1] a real error\nkept after two dropped\n"
                "a line in two writes\nE0000 cpu_aot_loader.cc:220] Loading XLA:CPU AOT result. "
                "Target machine feature +avx512f is not supported on the host machine.\n"
                + "".join(f"{i}\n" for i in range(20000))
                + "no newline at the end|after\nraised|caught\n")
    assert result.stderr == expected
    assert result.stdout == "True 1\n"


def _entries(folder):
    return {name: os.stat(os.path.join(folder, name)).st_mtime_ns
            for name in os.listdir(folder)}


@pytest.mark.slow
def test_a_rerun_loads_the_cached_loop_and_trains_the_same_weights(tmp_path, data_dir):
    """Three fresh 3-epoch runs sharing one cache folder: the first compiles and stores one
    entry; the second loads it (no new or rewritten entry), ends with bit-identical weights
    and prints none of TensorFlow's harmless messages on loading it; the third finds the
    entry cut short, clears it, compiles afresh and still ends with the same weights. The
    first run reads MNIST through tf.data (its own cache of decoded arrays is empty), the
    others from that cache: the key must not depend on it."""
    cache = tmp_path / "cache"
    # GAN_CACHE_DIR empty: the first run decodes. TF_XLA_FLAGS empty: an in-process XLA test
    # of this worker may have pointed it at the session's cache, and a command that inherits
    # it keeps that cache (as it keeps a user's), not --xla_cache_dir.
    derived = {"GAN_CACHE_DIR": str(tmp_path / "derived"), "TF_XLA_FLAGS": ""}

    def train(name, *extra):
        result = run_cli("gan.train", "--epochs=3", "--save_every=2", "--quiet",
                         f"--data_dir={data_dir}", f"--checkpoint_dir={tmp_path}/{name}",
                         f"--image_dir={tmp_path}/{name}_img", f"--xla_cache_dir={cache}",
                         *extra, env=derived)
        assert result.returncode == 0, result.stderr[-3000:]
        weights = checkpoint_tensors(str(tmp_path / name / "ckpt-3"))
        return result, {k: v for k, v in weights.items() if k.endswith("VARIABLE_VALUE")}

    _, first = train("a")
    entries = _entries(cache)
    assert len(entries) == 1
    (entry,) = entries
    assert entry.startswith("gan-") and entry.endswith("__XLA_CPU_JIT.pb")

    result, second = train("b")
    assert _entries(cache) == entries
    # TensorFlow's harmless messages on loading the entry are filtered out of fd 2.
    assert "Error parsing text-format" not in result.stderr, result.stderr[-3000:]
    assert "Target machine feature +prefer-no-" not in result.stderr, result.stderr[-3000:]
    assert first.keys() == second.keys() and len(first) > 20
    for name in first:
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)

    path = cache / entry
    path.write_bytes(path.read_bytes()[:1000])  # as a crash or a full disk could leave it
    result, third = train("c")
    assert "compilation cache failed" in result.stdout
    assert "removed 1 cached program(s)" in result.stdout
    for name in first:
        np.testing.assert_array_equal(first[name], third[name], err_msg=name)
    (new_entry,) = os.listdir(cache)  # the cut entry is gone or whole again
    assert os.path.getsize(cache / new_entry) > 1000



@pytest.mark.parametrize("xla, cache_dir, enabled", [
    (True, None, "default"), (True, "{tmp}/mine", "{tmp}/mine"), (True, "", None),
    (False, None, None), (False, "{tmp}/mine", None)])
def test_configure_keeps_a_cache_only_with_xla_and_a_folder(tmp_path, monkeypatch, xla,
                                                            cache_dir, enabled):
    """--xla_cache_dir= (empty) keeps no cache, nor does --noxla; otherwise the folder given,
    else the default under gan.files.cache_dir()."""
    from gan.config import TrainConfig

    monkeypatch.setattr(compilation, "_configured", False)
    monkeypatch.setenv("XLA_FLAGS", "")
    monkeypatch.setenv("GAN_CACHE_DIR", str(tmp_path / "cache"))
    asked = []
    monkeypatch.setattr(compilation, "enable_cache", lambda folder, log: asked.append(folder))
    config = TrainConfig(xla=xla, xla_cache_dir=None if cache_dir is None
                         else cache_dir.format(tmp=tmp_path))
    compilation.configure(config, log=pytest.fail)
    compilation.configure(config, log=pytest.fail)  # once per process
    if enabled == "default":
        enabled = os.path.join(tmp_path, "cache", "xla")
    assert asked == ([enabled.format(tmp=tmp_path)] if enabled else [])
