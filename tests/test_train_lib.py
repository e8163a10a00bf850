"""gan.training.run: a whole run."""

import json

import numpy as np
import pytest
import tensorflow as tf

from gan import config as config_lib
from gan.datasets import load as data
from gan.training import run as train_lib
from gan.training import step as step_lib
from conftest import noise, real_batch, same, tiny_config, weights


@pytest.mark.parametrize("start,save_every,bounds", [
    (0, 3, [(0, 1), (1, 6), (6, 11)]),    # fresh run: a one-step head, then strip-aligned
    (1, 3, [(1, 6), (6, 11), (11, 16)]),  # already at a strip: no head
    (5, 3, [(5, 7), (7, 12), (12, 17)]),  # resumed between strips
    (2, 20, [(2, 7), (7, 12), (12, 17)]),  # next strip (21) is K or more steps away
])
def test_training_elements_align_to_strips_and_serve_the_stream_of_each_step(
        start, save_every, bounds):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(40, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=40).astype(np.int32)
    config = config_lib.TrainConfig(batch_size=4, steps_per_call=5, save_every=save_every,
                                    seed=7)
    elements = train_lib.training_elements(images, labels, config, start)
    got = [next(elements) for _ in bounds]
    assert [(max(first, start), end) for _, _, first, end in got] == bounds
    # Step s's batch is the plain stream's, however the elements are cut.
    plain = data.make_batches(images, labels, 4, 7, start, 1)
    expected = [(b[0].numpy(), l[0].numpy()) for b, l in plain.take(bounds[-1][1] - start)]
    for batches, batch_labels, first, end in got:
        for step in range(max(first, start), end):
            np.testing.assert_array_equal(batches[step - first].numpy(),
                                          expected[step - start][0])
            np.testing.assert_array_equal(batch_labels[step - first].numpy(),
                                          expected[step - start][1])


def labels_batch(batch=8, seed=0):
    return tf.constant(np.random.default_rng(seed).integers(0, 10, batch), tf.int32)


def embedding_rows(model):
    """How many labels a conditional model's label embedding takes."""
    import keras

    return next(layer.input_dim for layer in model.layers
                if isinstance(layer, keras.layers.Embedding))


def _save_conditional_ema_run(folder, clusters=0):
    """A one-step conditional run with EMA, checkpointed as a training run would be (with
    `clusters`, the last cluster holds all the training images)."""
    from gan.training import checkpoints

    config = config_lib.TrainConfig(seed=0, conditional=True, ema=True, ema_decay=0.5,
                                    clusters=clusters)
    state = step_lib.create_state(config)
    labels = labels_batch(8)
    if clusters:
        state.cluster_prior.assign(tf.one_hot(clusters - 1, clusters))
        labels = labels % clusters
    tf.function(step_lib.train_step)(state, real_batch(8), labels)
    checkpoints.make_manager(state, str(folder), 1).save(checkpoint_number=1)
    return state


def test_restore_generator_gives_the_ema_weights_of_a_conditional_run(tmp_path):
    from gan.models import inference
    from gan.training import checkpoints

    state = _save_conditional_ema_run(tmp_path)
    generator, architecture, step = checkpoints.restore_generator(str(tmp_path))
    assert step == 1 and architecture["conditional"] and architecture["ema"]
    assert same(weights(generator), weights(state.ema_generator))
    assert not same(weights(generator), weights(state.generator))
    digits = inference.generate(generator, noise(3), labels=[4, 4, 4])
    np.testing.assert_allclose(digits,
                               inference.generate(step_lib.sampling_generator(state), noise(3),
                                                  [4, 4, 4]).numpy(),
                               atol=1e-6)


def test_clusters_need_the_conditional_networks_and_at_least_two():
    with pytest.raises(ValueError, match="--clusters trains .* give --conditional too"):
        config_lib.TrainConfig(clusters=5).validate()
    with pytest.raises(ValueError, match="--clusters must be 0 .off. or at least 2, got 1"):
        config_lib.TrainConfig(clusters=1, conditional=True).validate()


def test_clustered_training_feeds_cluster_ids_not_digits(tmp_path, data_dir, monkeypatch):
    from gan.datasets import load as data
    from gan.training import checkpoints

    seen = {}

    def cluster_labels(images, num_clusters, seed):
        seen.update(num_images=len(images), num_clusters=num_clusters, seed=seed)
        return np.full(len(images), 3, np.int32)  # every image in cluster 3

    recorded = []
    real_make_batches = data.make_batches

    def make_batches(images, labels, *args):
        recorded.append(np.asarray(labels))
        return real_make_batches(images, labels, *args)

    monkeypatch.setattr(data, "cluster_labels", cluster_labels)
    monkeypatch.setattr(data, "make_batches", make_batches)
    config = tiny_config(tmp_path, data_dir, conditional=True, clusters=5, epochs=3,
                         save_every=2, checkpoint_every=3, steps_per_call=2, seed=4,
                         quiet=True, xla=True)  # XLA as it always ran here
    state = train_lib.train(config, log=lambda line: None)
    train_size = len(data.load_split("mnist", "train", data_dir)[0])  # every training image
    assert seen == dict(num_images=train_size, num_clusters=5, seed=4)
    assert recorded and all((labels == 3).all() for labels in recorded)
    assert embedding_rows(state.generator) == embedding_rows(state.discriminator) == 5
    generator, architecture, step = checkpoints.restore_generator(str(tmp_path / "ckpt"))
    assert step == 3 and architecture["clusters"] == 5 and architecture["conditional"]
    assert architecture["cluster_prior"] == [0, 0, 0, 1, 0]
    assert embedding_rows(generator) == 5
    # a plain conditional run records no such field (its checkpoints stay resumable)
    assert "clusters" not in json.loads(config_lib.TrainConfig(conditional=True).architecture())


@pytest.mark.slow
def test_sample_draws_the_asked_digit_and_a_clustered_run_by_cluster_sizes_judged_unconditional(
        tmp_path, data_dir):
    from conftest import run_cli, run_cli_cases
    from gan.models import inference

    state = _save_conditional_ema_run(tmp_path / "ckpt", clusters=4)  # all in cluster 3
    digits = _save_conditional_ema_run(tmp_path / "digits")  # the digit-conditional run
    refused, drawn, sevens = run_cli_cases("gan.sample", [
        [f"--checkpoint_dir={tmp_path}/ckpt", "--digit=7", f"--out={tmp_path}/s.png"],
        [f"--checkpoint_dir={tmp_path}/ckpt", "--num=5", "--npy", "--seed=2",
         f"--out={tmp_path}/s.npy"],
        [f"--checkpoint_dir={tmp_path}/digits", "--num=5", "--digit=7", "--npy", "--seed=2",
         f"--out={tmp_path}/sevens.npy"]])
    # A digit-conditional run draws the digit asked for, from its EMA generator.
    assert sevens.returncode == 0, sevens.stderr[-3000:]
    np.testing.assert_allclose(
        np.load(tmp_path / "sevens.npy"),
        inference.generate(step_lib.sampling_generator(digits), inference.sample_noise(5, 100, 2),
                           [7] * 5).numpy(), atol=1e-5)
    # A --clusters run has no digits to ask for: refused, naming both flags.
    assert refused.returncode == 2 and "--digit=7" in refused.stderr
    assert "--clusters" in refused.stderr and not (tmp_path / "s.png").exists()
    assert drawn.returncode == 0, drawn.stderr[-3000:]
    expected = inference.generate(step_lib.sampling_generator(state),
                                  inference.sample_noise(5, 100, 2), [3] * 5).numpy()
    np.testing.assert_allclose(np.load(tmp_path / "s.npy"), expected, atol=1e-5)
    judged = run_cli("gan.evaluate", f"--checkpoint_dir={tmp_path}/ckpt", "--num_samples=300",
                     f"--data_dir={data_dir}", f"--json_out={tmp_path}/r.json", timeout=300)
    assert judged.returncode == 0, judged.stderr[-3000:]
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["architecture"]["clusters"] == 4
    assert "label_accuracy" not in result["generated"]  # clusters are not digits
