import keras
import numpy as np

from gan import losses


def test_bce_matches_keras_train_on_batch_loss():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, size=(64, 1)).astype("float32")
    y = np.concatenate([np.ones((32, 1)), np.zeros((32, 1))]).astype("float32")
    expected = keras.losses.BinaryCrossentropy()(y, p).numpy()
    assert np.isclose(losses.bce(y, p).numpy(), expected, rtol=1e-5)
    assert np.isclose(losses.discriminator_bce(p[:32], p[32:]).numpy(), expected, rtol=1e-5)


def test_generator_loss_is_non_saturating():
    # -log D(G(z)): large when D rejects the fakes, near 0 when D is fooled.
    assert losses.generator_bce(np.full((4, 1), 0.01, "float32")).numpy() > 4.0
    assert losses.generator_bce(np.full((4, 1), 0.99, "float32")).numpy() < 0.02


def test_bce_is_finite_at_saturation():
    p = np.array([[0.0], [1.0]], "float32")
    assert np.isfinite(losses.bce(np.array([[1.0], [0.0]], "float32"), p).numpy())
