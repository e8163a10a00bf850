"""`python -m gan.export`: a SavedModel of any kind of generator (unconditional, digit-
conditional, self-conditioned by --clusters) that loads with TensorFlow alone and serves
the signatures gan/export.py documents."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from conftest import CLUSTER_PRIOR, run_cli
from gan.models import inference
from gan.training import checkpoints

KINDS = ("unconditional", "digits", "clusters")
NUM_CLASSES = {"unconditional": 0, "digits": 10, "clusters": len(CLUSTER_PRIOR)}


@pytest.fixture(scope="module")
def saved(generator_checkpoint, conditional_checkpoints):
    """{kind: (checkpoint_dir, generator weights)} of the three kinds of generator."""
    return {"unconditional": generator_checkpoint, **conditional_checkpoints}


@pytest.fixture(scope="module")
def exported(tmp_path_factory, saved):
    """{kind: (SavedModel folder, restored generator, architecture)}, each exported by
    inference.export_saved_model, as `python -m gan.export` does."""
    out = {}
    for kind, (folder, weights) in saved.items():
        generator, architecture, _ = checkpoints.restore_generator(folder)
        for restored, expected in zip(generator.get_weights(), weights, strict=True):
            np.testing.assert_array_equal(restored, expected)  # the checkpoint's generator
        model_dir = str(tmp_path_factory.mktemp("exported") / kind)
        inference.export_saved_model(generator, architecture, model_dir)
        out[kind] = model_dir, generator, architecture
    return out


def expected_pixels(generator, noise, labels=None):
    return inference.to_uint8(inference.generate(generator, noise, labels=labels)).numpy()


def assert_close_pixels(got, expected):
    """uint8 images equal up to one level (float rounding between graph and eager)."""
    assert got.dtype == np.uint8 and got.shape == expected.shape
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1


@pytest.mark.parametrize("kind", KINDS)
def test_the_signatures_serve_what_export_documents(exported, kind):
    model_dir, generator, architecture = exported[kind]
    model = tf.saved_model.load(model_dir)
    classes = NUM_CLASSES[kind]
    assert int(model.noise_dim.numpy()) == 100 and int(model.num_classes.numpy()) == classes
    assert json.loads(model.architecture.numpy().decode()) == architecture

    serve = model.signatures["serving_default"]
    args, kwargs = serve.structured_input_signature
    assert args == ()
    expected_inputs = {"noise": tf.TensorSpec([None, 100], tf.float32, "noise")}
    if classes:
        expected_inputs["labels"] = tf.TensorSpec([None], tf.int32, "labels")
    assert kwargs == expected_inputs
    assert serve.structured_outputs == {
        "images": tf.TensorSpec([None, 28, 28], tf.uint8, "images")}

    noise = tf.random.stateless_normal([6, 100], seed=[1, 2])
    labels = tf.constant([0, 1, 2, 3, 1, 0], tf.int32) if classes else None
    served = serve(**dict(noise=noise, **({"labels": labels} if classes else {})))["images"]
    served = served.numpy()
    assert served.shape == (6, 28, 28) and served.dtype == np.uint8
    assert served.max() > 1  # pixels span 0-255, not 0-1 (uint8 has no values outside)
    assert_close_pixels(served, expected_pixels(generator, noise, labels))
    if classes:  # the labels reach the generator: other labels, other digits
        other = serve(noise=noise, labels=tf.constant([3, 2, 1, 0, 0, 1]))["images"].numpy()
        assert np.abs(other.astype(int) - served.astype(int)).max() > 1

    sample = model.signatures["sample"]
    assert sample.structured_input_signature[1] == {
        "num": tf.TensorSpec([], tf.int32, "num"), "seed": tf.TensorSpec([], tf.int32, "seed")}
    sampled = model.sample(num=tf.constant(12), seed=tf.constant(3))["images"].numpy()
    # the digits of `python -m gan.sample --num=12 --seed=3`: its noise and its labels
    assert_close_pixels(sampled, expected_pixels(
        generator, inference.sample_noise(12, 100, 3),
        inference.sampling_labels(architecture, 12, 3)))


def test_an_export_samples_at_the_runs_truncation(tmp_path, truncated_checkpoint):
    """The `sample` signature draws what `python -m gan.sample` draws: for a run with a
    sampling --truncation, the truncated noise."""
    folder, weights = truncated_checkpoint
    generator, architecture, _ = checkpoints.restore_generator(folder)
    assert inference.run_truncation(architecture) == 0.7
    inference.export_saved_model(generator, architecture, str(tmp_path / "model"))
    model = tf.saved_model.load(str(tmp_path / "model"))
    sampled = model.sample(num=tf.constant(12), seed=tf.constant(3))["images"].numpy()
    assert_close_pixels(sampled, expected_pixels(generator, inference.sample_noise(12, 100, 3,
                                                                                   0.7)))
    untruncated = expected_pixels(generator, inference.sample_noise(12, 100, 3))
    assert np.abs(sampled.astype(int) - untruncated.astype(int)).max() > 1


def test_a_clusters_export_samples_cluster_ids_in_the_stored_shares(exported):
    model_dir, generator, architecture = exported["clusters"]
    assert architecture["cluster_prior"] == pytest.approx(CLUSTER_PRIOR)
    model = tf.saved_model.load(model_dir)
    noise = inference.sample_noise(20, 100, 7)
    sampled = model.sample(num=tf.constant(20), seed=tf.constant(7))["images"].numpy()
    # each of the 20 images is the one its cluster id draws; the ids are the prior's 2, 4,
    # 6, 8 images of clusters 0-3, in the seed's order
    by_cluster = np.stack([expected_pixels(generator, noise, np.full(20, k)) for k in range(4)])
    ids = [int(np.argmin(np.abs(by_cluster[:, i].astype(int) - image).max(axis=(1, 2))))
           for i, image in enumerate(sampled.astype(int))]
    assert np.bincount(ids, minlength=4).tolist() == [2, 4, 6, 8]
    assert ids == inference.sampling_labels(architecture, 20, 7).tolist()
    assert ids != sorted(ids)  # shuffled, not cluster after cluster


@pytest.mark.parametrize("kind, labels, message", [
    ("digits", [3, 10], "labels must be < 10"),
    ("digits", [-1, 2], "labels must be >= 0"),
    ("digits", [1], "one entry per row of noise"),
    ("clusters", [4, 0], "labels must be < 4"),
])
def test_labels_out_of_range_are_refused(exported, kind, labels, message):
    model = tf.saved_model.load(exported[kind][0])
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        model.signatures["serving_default"](noise=tf.zeros([2, 100]),
                                            labels=tf.constant(labels, tf.int32))


# Runs in a fresh interpreter where `keras` and `gan` cannot be imported, as on a machine
# with only TensorFlow installed: for each SavedModel folder, its serving_default on fixed
# noise (and labels 0, 1, ... below its class count) and sample(num=6, seed=3).
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
    out_dir, *model_dirs = sys.argv[1:]
    noise = tf.random.stateless_normal([5, 100], seed=[1, 2])
    for i, model_dir in enumerate(model_dirs):
        model = tf.saved_model.load(model_dir)
        classes = int(model.num_classes.numpy())
        inputs = {"noise": noise}
        if classes:
            inputs["labels"] = tf.range(5) % classes
        served = model.signatures["serving_default"](**inputs)["images"]
        sampled = model.sample(num=tf.constant(6), seed=tf.constant(3))["images"]
        for name, tensor in (("served", served), ("sampled", sampled)):
            tf.io.write_file(f"{out_dir}/{name}{i}.pb", tf.io.serialize_tensor(tensor))
        print("model", i, int(model.noise_dim.numpy()), classes)
    print("keras imported:", "keras" in sys.modules)
""")


def read_tensor(path, dtype):
    return tf.io.parse_tensor(tf.io.read_file(str(path)), dtype).numpy()


@pytest.mark.slow
def test_export_command_round_trip_in_a_tensorflow_only_process(
        tmp_path, saved, exported):
    """`python -m gan.export` on a --clusters checkpoint (the best recipe's kind), and the
    other kinds' exports, each loaded and called where only TensorFlow is importable."""
    result = run_cli("gan.export", f"--checkpoint_dir={saved['clusters'][0]}",
                     f"--out={tmp_path}/model")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "labels=tf.fill([16], 0)" in result.stdout  # the load hint gives the labels

    models_in_order = [str(tmp_path / "model"), exported["unconditional"][0],
                       exported["digits"][0]]
    loaded = subprocess.run(
        [sys.executable, "-c", LOADER, str(tmp_path), *models_in_order], cwd=tmp_path,
        capture_output=True, text=True, timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert loaded.stdout.split("\n")[:4] == [
        "model 0 100 4", "model 1 100 0", "model 2 100 10", "keras imported: False"]

    noise = tf.random.stateless_normal([5, 100], seed=[1, 2])
    for i, kind in enumerate(("clusters", "unconditional", "digits")):
        _, generator, architecture = exported[kind]
        labels = np.arange(5) % NUM_CLASSES[kind] if NUM_CLASSES[kind] else None
        assert_close_pixels(read_tensor(tmp_path / f"served{i}.pb", tf.uint8),
                            expected_pixels(generator, noise, labels))
        assert_close_pixels(read_tensor(tmp_path / f"sampled{i}.pb", tf.uint8), expected_pixels(
            generator, inference.sample_noise(6, 100, 3),
            inference.sampling_labels(architecture, 6, 3)))


def test_export_keeps_an_existing_folder_unless_asked(tmp_path, exported):
    _, generator, architecture = exported["unconditional"]
    out = tmp_path / "model"
    out.mkdir()
    (out / "keep.txt").write_text("earlier result")
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
