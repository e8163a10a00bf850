"""What a new loss and a new network cost: an object of the kind the registry names and one
registry entry, here both made in this file only (docs/architecture.md shows the same). The
flag accepts the name, validation needs no TensorFlow, and training, checkpoints, sampling
and export follow without another file touched."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import tiny_config
from gan.models import losses, networks, registry
from gan.models.networks import Network, PIXELS, image_shape


class _LeastSquares(losses.Loss):
    """LSGAN (Mao et al. 2017) on D's unbounded scores."""

    def discriminator(self, out_real, out_fake):
        return 0.5 * (tf.reduce_mean((out_real - 1.0) ** 2) + tf.reduce_mean(out_fake ** 2))

    def generator(self, out_fake, out_real=None):
        return 0.5 * tf.reduce_mean((out_fake - 1.0) ** 2)


LSGAN = _LeastSquares()


def _wide_generator(channels):
    return [keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(PIXELS * channels, activation="sigmoid"),
            keras.layers.Reshape(image_shape(channels))]


def _wide_discriminator(spectral_norm, channels):
    return [keras.layers.Flatten(),
            networks._maybe_sn(keras.layers.Dense(48, activation="relu"), spectral_norm)]


TINY = Network(_wide_generator, _wide_discriminator)


@pytest.fixture
def registered(monkeypatch):
    """`--loss=lsgan` and `--model=tiny`, registered for this test only."""
    monkeypatch.setitem(registry.LOSSES, "lsgan", registry.Entry(f"{__name__}:LSGAN"))
    monkeypatch.setitem(registry.NETWORKS, "tiny", registry.Entry(f"{__name__}:TINY"))


def test_a_new_loss_and_network_are_flags_that_train_sample_and_export(
        registered, tmp_path, data_dir, train_flags):
    from gan.evaluation import evaluator as eval_lib
    from gan.models import inference
    from gan.training import checkpoints, run as train_lib

    config = train_flags("--loss=lsgan", "--model=tiny", "--conditional")
    config.validate()
    assert (config.loss, config.model) == ("lsgan", "tiny")

    config = tiny_config(tmp_path, data_dir, loss="lsgan", model="tiny", conditional=True,
                         epochs=40, checkpoint_every=40, save_every=20)
    state = train_lib.train(config, log=lambda line: None)
    # The network is the registered one (G: 100 + 32 label embedding -> 64 -> 784), and D
    # ends in a score, not a sigmoid, since the loss does not take probabilities.
    assert [layer.units for layer in state.generator.layers
            if isinstance(layer, keras.layers.Dense)] == [64, PIXELS]
    assert state.discriminator.layers[-1].__class__.__name__ != "Activation"
    assert all(np.isfinite(w).all() for w in state.generator.get_weights())

    generator, architecture, step = checkpoints.restore_generator(config.checkpoint_dir)
    assert step == 40 and (architecture["model"], architecture["loss"]) == ("tiny", "lsgan")
    labels = inference.sampling_labels(architecture, 20)
    images = eval_lib.sample_images(generator, 20, labels=labels)
    assert images.shape == (20, 28, 28)
    out = tmp_path / "exported"
    inference.export_saved_model(generator, architecture, str(out))
    served = tf.saved_model.load(str(out)).signatures["serving_default"](
        noise=tf.zeros([3, 100]), labels=tf.constant([1, 2, 3]))
    assert served["images"].shape == (3, 28, 28)


def test_the_registered_loss_is_what_the_step_differentiates(registered):
    """One D update of the new loss with SGD(1): D's change is minus its gradient."""
    from gan.config import TrainConfig
    from gan.training import step as step_lib

    state = step_lib.create_state(TrainConfig(loss="lsgan", model="tiny", seed=2))
    state.d_optimizer = keras.optimizers.SGD(learning_rate=1.0)
    real = tf.random.stateless_uniform([32, 28, 28], seed=[1, 2])
    noise = tf.random.stateless_normal([32, 100], seed=[3, 4])
    fakes = state.generator(noise)
    d = state.discriminator
    with tf.GradientTape() as tape:
        expected_loss = LSGAN.discriminator(d(real), d(fakes))
    grads = tape.gradient(expected_loss, d.trainable_variables)
    before = [v.numpy().copy() for v in d.trainable_variables]
    metrics = step_lib.discriminator_step(state, real, noise)
    np.testing.assert_allclose(float(metrics["d_loss"]), float(expected_loss), rtol=1e-5)
    for b, v, g in zip(before, d.trainable_variables, grads):
        np.testing.assert_allclose(b - v.numpy(), g.numpy(), rtol=1e-4, atol=1e-6)


def test_an_unregistered_name_is_refused_without_tensorflow():
    from gan.config import TrainConfig

    with pytest.raises(ValueError, match="--loss must be one of bce, hinge, wgan-gp, rpgan, "
                                         "got 'lsgan'"):
        TrainConfig(loss="lsgan").validate()
    with pytest.raises(ValueError, match="--model must be one of mlp, mlp_large, dcgan, "
                                         "got 'tiny'"):
        TrainConfig(model="tiny").validate()
    assert json.loads(TrainConfig().architecture())["loss"] == "bce"
