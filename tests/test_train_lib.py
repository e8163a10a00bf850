import json
import os

import numpy as np
import pytest
import tensorflow as tf

from gan import data
from gan import config as config_lib
from gan import train_lib


def weights(model):
    return [v.numpy().copy() for v in model.trainable_variables]


def same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b))


@pytest.fixture
def state():
    return train_lib.create_state(config_lib.TrainConfig(seed=3))


def real_batch(batch=32, seed=0):
    return tf.constant(np.random.default_rng(seed).uniform(0, 1, (batch, 28, 28)), tf.float32)


def noise(batch=32, seed=0):
    return tf.constant(np.random.default_rng(seed).normal(size=(batch, 100)), tf.float32)


def test_discriminator_step_changes_only_the_discriminator(state):
    g0, d0 = weights(state.generator), weights(state.discriminator)
    tf.function(train_lib.discriminator_step)(state, real_batch(), noise())
    assert same(weights(state.generator), g0)
    assert not any(np.array_equal(a, b) for a, b in zip(weights(state.discriminator), d0))


def test_generator_step_changes_only_the_generator(state):
    g0, d0 = weights(state.generator), weights(state.discriminator)
    tf.function(train_lib.generator_step)(state, noise())
    assert same(weights(state.discriminator), d0)
    assert not any(np.array_equal(a, b) for a, b in zip(weights(state.generator), g0))


def test_train_step_updates_both_networks_and_counts(state):
    g0, d0 = weights(state.generator), weights(state.discriminator)
    metrics = tf.function(train_lib.train_step)(state, real_batch())
    assert not same(weights(state.generator), g0)
    assert not same(weights(state.discriminator), d0)
    assert int(state.step.numpy()) == 1
    assert int(state.g_optimizer.iterations.numpy()) == 1
    assert int(state.d_optimizer.iterations.numpy()) == 1
    assert set(metrics) == {"d_loss", "g_loss", "d_real", "d_fake"}
    for name, value in metrics.items():
        assert np.isfinite(value.numpy()), name
    assert 0 <= metrics["d_real"].numpy() <= 1 and 0 <= metrics["d_fake"].numpy() <= 1


def test_losses_start_near_chance():
    # d_loss is computed before D's first update: an untrained D outputs ~0.5 -> ~log(2).
    state = train_lib.create_state(config_lib.TrainConfig(seed=0))
    metrics = tf.function(train_lib.train_step)(state, real_batch())
    assert abs(metrics["d_loss"].numpy() - np.log(2)) < 0.3
    assert abs(metrics["d_real"].numpy() - 0.5) < 0.2


def test_same_seed_same_initial_weights_and_noise():
    a = train_lib.create_state(config_lib.TrainConfig(seed=5))
    b = train_lib.create_state(config_lib.TrainConfig(seed=5))
    c = train_lib.create_state(config_lib.TrainConfig(seed=6))
    assert same(weights(a.generator), weights(b.generator))
    assert np.array_equal(a.fixed_noise.numpy(), b.fixed_noise.numpy())
    assert not same(weights(a.generator), weights(c.generator))


@pytest.mark.parametrize("xla", [False, True])
def test_multi_step_computes_the_same_as_single_steps(xla):
    """The fast path (K steps per compiled call) equals K one-step calls."""
    batches = tf.stack([real_batch(seed=i) for i in range(6)])
    plain = train_lib.create_state(config_lib.TrainConfig(seed=1))
    step = tf.function(train_lib.train_step, jit_compile=xla)
    plain_metrics = [step(plain, batches[i]) for i in range(6)]

    fast = train_lib.create_state(config_lib.TrainConfig(seed=1))
    multi = train_lib.make_multi_step(fast, jit_compile=xla)
    first = multi(batches, tf.constant(0), tf.constant(2))   # split like the training loop
    second = multi(batches, tf.constant(2), tf.constant(4))
    assert int(first["steps"]) == 2 and int(second["steps"]) == 4
    assert int(fast.step.numpy()) == 6
    expected_d = np.mean([m["d_loss"].numpy() for m in plain_metrics[2:]])
    assert np.isclose(second["d_loss"].numpy(), expected_d, rtol=1e-4)
    for a, b in zip(weights(plain.generator) + weights(plain.discriminator),
                    weights(fast.generator) + weights(fast.discriminator)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_step_arithmetic_is_the_same_with_and_without_xla():
    """Given the same noise, XLA computes what plain TensorFlow computes."""
    results = []
    for xla in (False, True):
        state = train_lib.create_state(config_lib.TrainConfig(seed=2))

        @tf.function(jit_compile=xla)
        def both(real, z_d, z_g):
            out = train_lib.discriminator_step(state, real, z_d)
            out.update(train_lib.generator_step(state, z_g))
            return out

        for i in range(3):
            metrics = both(real_batch(seed=i), noise(seed=10 + i), noise(seed=20 + i))
        results.append((metrics, weights(state.generator) + weights(state.discriminator)))
    (m0, w0), (m1, w1) = results
    for name in m0:
        np.testing.assert_allclose(m0[name].numpy(), m1[name].numpy(), rtol=1e-4)
    for a, b in zip(w0, w1):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_multi_step_stops_at_the_first_non_finite_loss(state):
    batches = tf.stack([real_batch(seed=i) for i in range(5)])
    multi = train_lib.make_multi_step(state, jit_compile=True)
    multi(batches, tf.constant(0), tf.constant(2))
    kernel = state.discriminator.trainable_variables[0]
    kernel.assign(tf.fill(kernel.shape, np.nan))
    out = multi(batches, tf.constant(0), tf.constant(5))
    assert not bool(out["finite"])
    assert int(out["steps"]) == 1
    assert int(state.step.numpy()) == 3


@pytest.mark.parametrize("conditional", [False, True])
def test_multi_step_compiles_one_program_for_every_chunk_start_and_length(conditional):
    # A training run calls the loop at chunk offsets 0 and 1 (images are due after iteration
    # e) and other ones after a resume; XLA once treated `start` as a compile-time constant
    # and recompiled (~2.5 s) for each new offset. The compiled program must not depend on
    # the values of start and count.
    state = train_lib.create_state(config_lib.TrainConfig(conditional=conditional))
    multi = train_lib.make_multi_step(state, jit_compile=True)
    batches = tf.zeros([4, 32, 28, 28])
    labels = tf.zeros([4, 32], tf.int32) if conditional else None
    hlo = [multi.experimental_get_compiler_ir(batches, tf.constant(start), tf.constant(count),
                                              labels)(stage="hlo")
           for start, count in [(0, 4), (1, 2), (3, 1)]]
    assert hlo[0] == hlo[1] == hlo[2]


def test_warm_up_compiles_without_changing_the_state_or_retracing_later():
    config = config_lib.TrainConfig(seed=3, steps_per_call=4, batch_size=8, num_images=3)
    state = train_lib.create_state(config)
    def snapshot():
        models_and_optimizers = (state.generator, state.discriminator, state.g_optimizer,
                                 state.d_optimizer)
        return ([v.numpy().copy() for m in models_and_optimizers for v in m.variables]
                + [state.rng.state.numpy().copy(), state.step.numpy()])

    before = snapshot()
    multi_step = train_lib.make_multi_step(state, jit_compile=True)
    train_lib.warm_up(multi_step, config)
    assert same(before, snapshot())
    traces = multi_step.experimental_get_tracing_count()
    batches = tf.random.uniform([4, 8, 28, 28])
    out = multi_step(batches, tf.constant(0), tf.constant(4), tf.zeros([4, 8], tf.int32))
    assert int(out["steps"]) == 4 and int(state.step.numpy()) == 4
    assert multi_step.experimental_get_tracing_count() == traces == 1


def _failing_warm_up(failures, calls):
    """A warm_up stand-in that records its loop functions and fails `failures` times."""
    def fake(multi_step, config):
        calls.append(multi_step)
        if len(calls) <= failures:
            raise tf.errors.OutOfRangeError(None, None, "Read less bytes than requested")
    return fake


@pytest.mark.parametrize("failures", [1, 2])
def test_compile_loop_clears_the_cache_and_compiles_a_new_function_once(
        state, tmp_path, monkeypatch, failures):
    from gan import compilation

    monkeypatch.setattr(compilation, "_active_cache", (str(tmp_path), "gan-test"))
    (tmp_path / "gan-test__1__2__XLA_CPU_JIT.pb").write_bytes(b"cut short")
    (tmp_path / "other.pb").write_bytes(b"kept")
    calls, lines = [], []
    monkeypatch.setattr(train_lib, "warm_up", _failing_warm_up(failures, calls))
    config = config_lib.TrainConfig(steps_per_call=2, batch_size=4)
    if failures == 1:
        multi_step = train_lib.compile_loop(state, config, log=lines.append)
        assert multi_step is calls[1] and calls[0] is not calls[1]  # a new function, new key
    else:
        with pytest.raises(compilation.CacheError, match="also after clearing it: Read less"):
            train_lib.compile_loop(state, config, log=lines.append)
        assert len(calls) == 2  # one retry only
    assert os.listdir(tmp_path) == ["other.pb"]
    assert len(lines) == 1 and "removed 1 cached program(s) from" in lines[0]


def test_compile_loop_without_a_cache_raises_the_compilation_error(state, monkeypatch):
    from gan import compilation

    monkeypatch.setattr(compilation, "_active_cache", None)
    calls = []
    monkeypatch.setattr(train_lib, "warm_up", _failing_warm_up(1, calls))
    with pytest.raises(tf.errors.OutOfRangeError):
        train_lib.compile_loop(state, config_lib.TrainConfig(), log=pytest.fail)
    assert len(calls) == 1


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


@pytest.mark.parametrize("step,every,offset,expected", [
    (0, 100, 1, 1), (1, 100, 1, 101), (100, 100, 1, 101), (0, 1000, 0, 1000),
    (999, 1000, 0, 1000), (1000, 1000, 0, 2000)])
def test_next_boundary(step, every, offset, expected):
    assert train_lib.next_boundary(step, every, offset) == expected


# --- models, losses, conditional training and EMA beyond the original ------------------------

QUALITY_CONFIGS = [
    dict(model="mlp_large", loss="hinge", conditional=True, ema=True),
    dict(model="dcgan", loss="wgan-gp", spectral_norm=True),
    dict(model="dcgan", loss="bce", conditional=True, ema=True),
    dict(model="mlp", loss="wgan-gp", conditional=True, d_steps=2),
]


def labels_batch(batch=8, seed=0):
    return tf.constant(np.random.default_rng(seed).integers(0, 10, batch), tf.int32)


@pytest.mark.parametrize("options", QUALITY_CONFIGS, ids=lambda o: "-".join(map(str, o.values())))
def test_every_model_and_loss_takes_a_finite_step(options):
    config = config_lib.TrainConfig(seed=0, **options)
    state = train_lib.create_state(config)
    g0, d0 = weights(state.generator), weights(state.discriminator)
    batch = 8 * config.d_steps  # one real batch of 8 per D update
    metrics = tf.function(train_lib.train_step)(state, real_batch(batch), labels_batch(batch))
    for name, value in metrics.items():
        assert np.isfinite(value.numpy()), name
    assert not same(weights(state.generator), g0)
    assert not same(weights(state.discriminator), d0)
    assert int(state.step.numpy()) == 1
    assert int(state.d_optimizer.iterations.numpy()) == config.d_steps
    assert int(state.g_optimizer.iterations.numpy()) == 1


def test_ema_moves_toward_the_live_generator_by_its_decay():
    state = train_lib.create_state(config_lib.TrainConfig(seed=0, ema=True, ema_decay=0.9))
    assert same(weights(state.ema_generator), weights(state.generator))  # starts equal
    step = tf.function(train_lib.train_step)
    step(state, real_batch())
    for _ in range(3):
        before = weights(state.ema_generator)
        step(state, real_batch())
        live, after = weights(state.generator), weights(state.ema_generator)
        for b, l_, a in zip(before, live, after):
            np.testing.assert_allclose(a, 0.9 * b + 0.1 * l_, rtol=1e-5, atol=1e-7)
            assert np.linalg.norm(a - l_) < np.linalg.norm(b - l_)
    assert not same(weights(state.ema_generator), weights(state.generator))


def test_images_come_from_the_ema_generator_and_it_is_checkpointed(tmp_path):
    config = config_lib.TrainConfig(seed=0, ema=True)
    state = train_lib.create_state(config)
    tf.function(train_lib.train_step)(state, real_batch())
    assert train_lib.sampling_generator(state) is state.ema_generator
    z = noise(4)
    np.testing.assert_array_equal(train_lib.generate(state, z).numpy(),
                                  state.ema_generator(z, training=False).numpy())
    path = state.write(str(tmp_path / "ckpt"))
    restored = train_lib.create_state(config)
    restored.read(path).assert_existing_objects_matched()
    assert same(weights(restored.ema_generator), weights(state.ema_generator))


def test_without_ema_images_come_from_the_live_generator():
    state = train_lib.create_state(config_lib.TrainConfig(seed=0))
    assert state.ema_generator is None
    assert train_lib.sampling_generator(state) is state.generator


def test_conditional_sampling_returns_one_image_per_requested_label():
    state = train_lib.create_state(config_lib.TrainConfig(seed=0, conditional=True, ema=True))
    images = train_lib.generate(state, noise(6), [7, 7, 7, 1, 2, 3]).numpy()
    assert images.shape == (6, 28, 28)
    same_noise = tf.repeat(noise(1), 2, axis=0)
    a, b = train_lib.generate(state.generator, same_noise, np.array([0, 5])).numpy()
    assert not np.allclose(a, b)  # the label changes the digit
    with pytest.raises(ValueError, match="labels"):
        train_lib.generate(state, noise(2))
    strip = train_lib.make_generate(state)(state.fixed_noise).numpy()
    assert strip.shape == (10, 28, 28)
    np.testing.assert_array_equal(train_lib.strip_labels(12).numpy(),
                                  [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1])


@pytest.mark.parametrize("change", [dict(conditional=True), dict(loss="hinge"),
                                    dict(spectral_norm=True), dict(ema=True),
                                    dict(model="dcgan")])
def test_architecture_changing_options_change_the_checkpoint_architecture(change):
    base = config_lib.TrainConfig()
    assert config_lib.TrainConfig(**change).architecture() != base.architecture()


@pytest.mark.parametrize("bad,flag", [(dict(loss="lsgan"), "--loss"), (dict(d_steps=0), "--d_steps"),
                                      (dict(ema_decay=1.0), "--ema_decay"),
                                      (dict(model="resnet"), "--model")])
def test_bad_quality_options_name_their_flag(tmp_path, bad, flag):
    config = config_lib.TrainConfig(image_dir=str(tmp_path / "i"),
                                    checkpoint_dir=str(tmp_path / "c"), **bad)
    with pytest.raises(ValueError, match=flag):
        config.validate()


def _save_conditional_ema_run(folder, clusters=0):
    """A one-step conditional run with EMA, checkpointed as a training run would be (with
    `clusters`, the last cluster holds all the training images)."""
    from gan import checkpoints

    config = config_lib.TrainConfig(seed=0, conditional=True, ema=True, ema_decay=0.5,
                                    clusters=clusters)
    state = train_lib.create_state(config)
    labels = labels_batch(8)
    if clusters:
        state.cluster_prior.assign(tf.one_hot(clusters - 1, clusters))
        labels = labels % clusters
    tf.function(train_lib.train_step)(state, real_batch(8), labels)
    checkpoints.make_manager(state, str(folder), 1).save(checkpoint_number=1)
    return state


def test_restore_generator_gives_the_ema_weights_of_a_conditional_run(tmp_path):
    from gan import checkpoints, inference

    state = _save_conditional_ema_run(tmp_path)
    generator, architecture, step = checkpoints.restore_generator(str(tmp_path))
    assert step == 1 and architecture["conditional"] and architecture["ema"]
    assert same(weights(generator), weights(state.ema_generator))
    assert not same(weights(generator), weights(state.generator))
    digits = inference.generate(generator, noise(3), labels=[4, 4, 4])
    np.testing.assert_allclose(digits, train_lib.generate(state, noise(3), [4, 4, 4]).numpy(),
                               atol=1e-6)


@pytest.mark.slow
def test_sample_cli_draws_the_asked_digit_from_a_conditional_run(tmp_path):
    from conftest import run_cli
    from gan import inference

    state = _save_conditional_ema_run(tmp_path / "ckpt")
    result = run_cli("gan.sample", f"--checkpoint_dir={tmp_path}/ckpt", "--num=5", "--digit=7",
                     "--npy", "--seed=2", f"--out={tmp_path}/s.npy", timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    expected = train_lib.generate(state, inference.sample_noise(5, 100, 2), [7] * 5).numpy()
    np.testing.assert_allclose(np.load(tmp_path / "s.npy"), expected, atol=1e-5)


def test_clusters_need_the_conditional_networks_and_at_least_two():
    with pytest.raises(ValueError, match="--clusters trains .* give --conditional too"):
        config_lib.TrainConfig(clusters=5).validate()
    with pytest.raises(ValueError, match="--clusters must be 0 .off. or at least 2, got 1"):
        config_lib.TrainConfig(clusters=1, conditional=True).validate()


def test_clustered_training_feeds_cluster_ids_not_digits(tmp_path, data_dir, monkeypatch):
    from gan import checkpoints, data, models

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
    config = config_lib.TrainConfig(
        conditional=True, clusters=5, epochs=3, save_every=2, checkpoint_every=3,
        steps_per_call=2, seed=4, data_dir=data_dir, quiet=True,
        image_dir=str(tmp_path / "img"), checkpoint_dir=str(tmp_path / "ckpt"))
    state = train_lib.train(config, log=lambda line: None)
    assert seen == dict(num_images=60000, num_clusters=5, seed=4)
    assert recorded and all((labels == 3).all() for labels in recorded)
    assert models.num_classes(state.generator) == models.num_classes(state.discriminator) == 5
    generator, architecture, step = checkpoints.restore_generator(str(tmp_path / "ckpt"))
    assert step == 3 and architecture["clusters"] == 5 and architecture["conditional"]
    assert architecture["cluster_prior"] == [0, 0, 0, 1, 0]
    assert models.num_classes(generator) == 5
    # a plain conditional run records no such field (its checkpoints stay resumable)
    assert "clusters" not in json.loads(config_lib.TrainConfig(conditional=True).architecture())


@pytest.mark.slow
def test_a_clustered_checkpoint_is_sampled_by_cluster_sizes_and_judged_as_unconditional(
        tmp_path, data_dir):
    from conftest import run_cli
    from gan import inference

    state = _save_conditional_ema_run(tmp_path / "ckpt", clusters=4)  # all in cluster 3
    refused = run_cli("gan.sample", f"--checkpoint_dir={tmp_path}/ckpt", "--digit=7",
                      f"--out={tmp_path}/s.png", timeout=300)
    assert refused.returncode == 2 and "--digit=7" in refused.stderr
    assert "--clusters" in refused.stderr and not (tmp_path / "s.png").exists()
    drawn = run_cli("gan.sample", f"--checkpoint_dir={tmp_path}/ckpt", "--num=5", "--npy",
                    "--seed=2", f"--out={tmp_path}/s.npy", timeout=300)
    assert drawn.returncode == 0, drawn.stderr[-3000:]
    expected = train_lib.generate(state, inference.sample_noise(5, 100, 2), [3] * 5).numpy()
    np.testing.assert_allclose(np.load(tmp_path / "s.npy"), expected, atol=1e-5)
    judged = run_cli("gan.evaluate", f"--checkpoint_dir={tmp_path}/ckpt", "--num_samples=300",
                     f"--data_dir={data_dir}", f"--json_out={tmp_path}/r.json", timeout=300)
    assert judged.returncode == 0, judged.stderr[-3000:]
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["architecture"]["clusters"] == 4
    assert "label_accuracy" not in result["generated"]  # clusters are not digits
