"""`python -m gan.export`: a SavedModel that loads with TensorFlow alone."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from conftest import generator_with, run_cli
from gan import inference

# Runs in a fresh interpreter where `keras` and `gan` cannot be imported, as on a machine
# with only TensorFlow installed.
LOADER = textwrap.dedent("""
    import importlib.machinery as machinery, sys
    class Hidden(machinery.PathFinder):
        @classmethod
        def find_spec(cls, name, path=None, target=None):
            if name.split(".")[0] in ("keras", "tf_keras", "gan"):
                return None
            return machinery.PathFinder.find_spec(name, path, target)
    sys.meta_path = [Hidden if f is machinery.PathFinder else f for f in sys.meta_path]

    import tensorflow as tf
    model_dir, noise_file, out_dir = sys.argv[1:]
    model = tf.saved_model.load(model_dir)
    noise = tf.io.parse_tensor(tf.io.read_file(noise_file), tf.float32)
    served = model.signatures["serving_default"](noise=noise)["images"]
    sampled = model.sample(num=tf.constant(6), seed=tf.constant(3))["images"]
    for name, tensor in (("served", served), ("sampled", sampled)):
        tf.io.write_file(f"{out_dir}/{name}.pb", tf.io.serialize_tensor(tensor))
    print("noise_dim", int(model.noise_dim.numpy()), "keras" in sys.modules)
""")


def read_tensor(path, dtype):
    return tf.io.parse_tensor(tf.io.read_file(str(path)), dtype).numpy()


@pytest.mark.slow
def test_export_round_trip_in_a_tensorflow_only_process(tmp_path, generator_checkpoint):
    folder, weights = generator_checkpoint
    result = run_cli("gan.export", f"--checkpoint_dir={folder}", f"--out={tmp_path}/model")
    assert result.returncode == 0, result.stderr[-3000:]

    noise = tf.random.stateless_normal([5, 100], seed=[1, 2])
    tf.io.write_file(str(tmp_path / "noise.pb"), tf.io.serialize_tensor(noise))
    loaded = subprocess.run(
        [sys.executable, "-c", LOADER, str(tmp_path / "model"), str(tmp_path / "noise.pb"),
         str(tmp_path)], cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert "noise_dim 100 False" in loaded.stdout  # and Keras was never imported

    generator = generator_with(weights)
    served = read_tensor(tmp_path / "served.pb", tf.uint8)
    assert served.shape == (5, 28, 28) and served.dtype == np.uint8
    expected = inference.to_uint8(generator(noise)).numpy()
    assert np.abs(served.astype(int) - expected).max() <= 1
    assert served.max() > 0  # values span the 0-255 range, not 0-1

    sampled = read_tensor(tmp_path / "sampled.pb", tf.uint8)  # the digits of gan.sample
    expected = inference.to_uint8(generator(inference.sample_noise(6, 100, 3))).numpy()
    assert sampled.shape == (6, 28, 28)
    assert np.abs(sampled.astype(int) - expected).max() <= 1


def test_export_keeps_an_existing_folder_unless_asked(tmp_path, generator_checkpoint):
    folder, weights = generator_checkpoint
    out = tmp_path / "model"
    out.mkdir()
    (out / "keep.txt").write_text("earlier result")
    generator = generator_with(weights)
    architecture = {"model": "mlp", "noise_dim": 100, "dataset": "mnist"}
    with pytest.raises(FileExistsError, match="not empty"):
        inference.export_saved_model(generator, architecture, str(out))
    assert (out / "keep.txt").read_text() == "earlier result"
    inference.export_saved_model(generator, architecture, str(out), overwrite=True)
    assert sorted(os.listdir(out)) == ["assets", "fingerprint.pb", "saved_model.pb", "variables"]
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".tmp-export")]


@pytest.mark.slow
def test_export_without_out_is_a_clear_error(generator_checkpoint):
    folder, _ = generator_checkpoint
    result = run_cli("gan.export", f"--checkpoint_dir={folder}", timeout=120)
    assert result.returncode == 2
    assert "--out=DIR is required" in result.stderr
