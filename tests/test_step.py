"""gan.training.step: the state and one iteration."""

import numpy as np
import pytest
import tensorflow as tf

from gan import config as config_lib
from gan.models import inference
from gan.training import step as step_lib
from conftest import noise, real_batch, same, tiny_config, weights


def test_discriminator_step_changes_only_the_discriminator(state):
    g0, d0 = weights(state.generator), weights(state.discriminator)
    tf.function(step_lib.discriminator_step)(state, real_batch(), noise())
    assert same(weights(state.generator), g0)
    assert not any(np.array_equal(a, b) for a, b in zip(weights(state.discriminator), d0))


def test_generator_step_changes_only_the_generator(state):
    g0, d0 = weights(state.generator), weights(state.discriminator)
    tf.function(step_lib.generator_step)(state, noise())
    assert same(weights(state.discriminator), d0)
    assert not any(np.array_equal(a, b) for a, b in zip(weights(state.generator), g0))


def test_train_step_updates_both_networks_and_counts(state):
    g0, d0 = weights(state.generator), weights(state.discriminator)
    metrics = tf.function(step_lib.train_step)(state, real_batch())
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
    state = step_lib.create_state(config_lib.TrainConfig(seed=0))
    metrics = tf.function(step_lib.train_step)(state, real_batch())
    assert abs(metrics["d_loss"].numpy() - np.log(2)) < 0.3
    assert abs(metrics["d_real"].numpy() - 0.5) < 0.2


def test_same_seed_same_initial_weights_and_noise():
    a = step_lib.create_state(config_lib.TrainConfig(seed=5))
    b = step_lib.create_state(config_lib.TrainConfig(seed=5))
    c = step_lib.create_state(config_lib.TrainConfig(seed=6))
    assert same(weights(a.generator), weights(b.generator))
    assert np.array_equal(a.fixed_noise.numpy(), b.fixed_noise.numpy())
    assert not same(weights(a.generator), weights(c.generator))


def test_step_arithmetic_is_the_same_with_and_without_xla():
    """Given the same noise, XLA computes what plain TensorFlow computes."""
    results = []
    for xla in (False, True):
        state = step_lib.create_state(config_lib.TrainConfig(seed=2))

        @tf.function(jit_compile=xla)
        def both(real, z_d, z_g):
            out = step_lib.discriminator_step(state, real, z_d)
            out.update(step_lib.generator_step(state, z_g))
            return out

        for i in range(3):
            metrics = both(real_batch(seed=i), noise(seed=10 + i), noise(seed=20 + i))
        results.append((metrics, weights(state.generator) + weights(state.discriminator)))
    (m0, w0), (m1, w1) = results
    for name in m0:
        np.testing.assert_allclose(m0[name].numpy(), m1[name].numpy(), rtol=1e-4)
    for a, b in zip(w0, w1):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


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
    state = step_lib.create_state(config)
    g0, d0 = weights(state.generator), weights(state.discriminator)
    batch = 8 * config.d_steps  # one real batch of 8 per D update
    metrics = tf.function(step_lib.train_step)(state, real_batch(batch), labels_batch(batch))
    for name, value in metrics.items():
        assert np.isfinite(value.numpy()), name
    assert not same(weights(state.generator), g0)
    assert not same(weights(state.discriminator), d0)
    assert int(state.step.numpy()) == 1
    assert int(state.d_optimizer.iterations.numpy()) == config.d_steps
    assert int(state.g_optimizer.iterations.numpy()) == 1


def test_ema_moves_toward_the_live_generator_by_its_decay():
    state = step_lib.create_state(config_lib.TrainConfig(seed=0, ema=True, ema_decay=0.9))
    assert same(weights(state.ema_generator), weights(state.generator))  # starts equal
    step = tf.function(step_lib.train_step)
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
    state = step_lib.create_state(config)
    tf.function(step_lib.train_step)(state, real_batch())
    assert step_lib.sampling_generator(state) is state.ema_generator
    z = noise(4)
    np.testing.assert_array_equal(inference.generate(step_lib.sampling_generator(state), z).numpy(),
                                  state.ema_generator(z, training=False).numpy())
    path = state.write(str(tmp_path / "ckpt"))
    restored = step_lib.create_state(config)
    restored.read(path).assert_existing_objects_matched()
    assert same(weights(restored.ema_generator), weights(state.ema_generator))


def test_without_ema_images_come_from_the_live_generator():
    state = step_lib.create_state(config_lib.TrainConfig(seed=0))
    assert state.ema_generator is None
    assert step_lib.sampling_generator(state) is state.generator


def test_conditional_sampling_returns_one_image_per_requested_label():
    state = step_lib.create_state(config_lib.TrainConfig(seed=0, conditional=True, ema=True))
    images = inference.generate(step_lib.sampling_generator(state), noise(6),
                                [7, 7, 7, 1, 2, 3]).numpy()
    assert images.shape == (6, 28, 28)
    same_noise = tf.repeat(noise(1), 2, axis=0)
    a, b = inference.generate(state.generator, same_noise, np.array([0, 5])).numpy()
    assert not np.allclose(a, b)  # the label changes the digit
    labels = inference.sampling_labels({"conditional": True}, 12)  # strips, samples, eval
    np.testing.assert_array_equal(labels, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1])


@pytest.mark.parametrize("change", [dict(conditional=True), dict(loss="hinge"),
                                    dict(spectral_norm=True), dict(ema=True),
                                    dict(model="dcgan")])
def test_architecture_changing_options_change_the_checkpoint_architecture(change):
    base = config_lib.TrainConfig()
    assert config_lib.TrainConfig(**change).architecture() != base.architecture()


@pytest.mark.parametrize("bad,flag", [(dict(loss="lsgan"), "--loss"),
                                      (dict(d_steps=0), "--d_steps"),
                                      (dict(ema_decay=1.0), "--ema_decay"),
                                      (dict(model="resnet"), "--model")])
def test_bad_quality_options_name_their_flag(tmp_path, bad, flag):
    config = tiny_config(tmp_path, **bad)
    with pytest.raises(ValueError, match=flag):
        config.validate()
