import keras
import numpy as np

from gan.models import losses, registry


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


# --- hinge, WGAN-GP ---------------------------------------------------------------------------

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402


def test_hinge_and_wasserstein_known_values():
    real = np.array([[2.0], [0.5]], "float32")
    fake = np.array([[-2.0], [0.0]], "float32")
    # relu(1 - real) = [0, 0.5] -> 0.25; relu(1 + fake) = [0, 1] -> 0.5
    hinge, wgan_gp = registry.loss("hinge"), registry.loss("wgan-gp")
    assert np.isclose(hinge.discriminator(real, fake).numpy(), 0.75)
    assert np.isclose(wgan_gp.discriminator(real, fake).numpy(), -1.0 - 1.25)
    assert np.isclose(hinge.generator(fake).numpy(), 1.0)
    assert np.isclose(wgan_gp.generator(fake).numpy(), 1.0)


def test_bce_kind_is_the_original_loss():
    p_real = np.array([[0.9], [0.6]], "float32")
    p_fake = np.array([[0.2], [0.3]], "float32")
    bce = registry.loss("bce")
    assert bce.probabilities and not registry.loss("hinge").probabilities
    assert bce.discriminator(p_real, p_fake).numpy() == \
        losses.discriminator_bce(p_real, p_fake).numpy()
    assert bce.generator(p_fake).numpy() == losses.generator_bce(p_fake).numpy()


def test_unknown_loss_is_an_error_naming_the_flag_and_the_losses():
    with pytest.raises(ValueError, match="--loss must be one of bce, hinge, wgan-gp.*'lsgan'"):
        registry.loss("lsgan")


def test_interpolation_weights_are_one_uniform_draw_per_sample():
    alpha = losses.interpolation_weights(tf.random.Generator.from_seed(0), 20000).numpy()
    assert alpha.shape == (20000, 1, 1)  # one weight per sample, shared by its pixels
    assert alpha.min() >= 0.0 and alpha.max() <= 1.0
    # Uniform on [0, 1]: the empirical CDF is close to the identity (Kolmogorov-Smirnov).
    values = np.sort(alpha.ravel())
    cdf = np.arange(1, values.size + 1) / values.size
    assert np.max(np.abs(cdf - values)) < 0.015


def _linear_critic(w):
    return lambda x: tf.reduce_sum(x * w, axis=[1, 2])[:, None]


def test_gradient_penalty_of_a_linear_critic_is_its_norm_minus_one_squared():
    # grad_x (w . x) = w everywhere, so the penalty is (||w|| - 1)^2 whatever alpha is.
    rng = np.random.default_rng(0)
    w = tf.constant(rng.normal(size=(28, 28)) * 0.1, tf.float32)
    real, fake = (tf.constant(rng.uniform(size=(6, 28, 28)), tf.float32) for _ in range(2))
    alpha = losses.interpolation_weights(tf.random.Generator.from_seed(1), 6)
    expected = (np.linalg.norm(w.numpy()) - 1.0) ** 2
    got = losses.gradient_penalty(_linear_critic(w), real, fake, alpha).numpy()
    assert np.isclose(got, expected, rtol=1e-5)
    unit = w / tf.norm(w)
    assert losses.gradient_penalty(_linear_critic(unit), real, fake, alpha).numpy() < 1e-8


def test_gradient_penalty_interpolates_per_sample_and_averages_per_sample_norms():
    # critic(x) = 0.5 ||x||^2 has gradient x, so the penalty is mean_i (||x_i|| - 1)^2 with
    # x_i = alpha_i real_i + (1 - alpha_i) fake_i: a known answer that checks where the
    # interpolates lie, that alpha is per sample, and that norms are per sample.
    rng = np.random.default_rng(3)
    real = rng.uniform(size=(5, 28, 28)).astype("float32") * 0.1
    fake = rng.uniform(size=(5, 28, 28)).astype("float32") * 0.1
    alpha = np.array([0.0, 0.25, 0.5, 0.9, 1.0], "float32")[:, None, None]
    critic = lambda x: 0.5 * tf.reduce_sum(tf.square(x), axis=[1, 2])[:, None]  # noqa: E731
    x = alpha * real + (1 - alpha) * fake
    expected = np.mean((np.linalg.norm(x.reshape(5, -1), axis=1) - 1.0) ** 2)
    got = losses.gradient_penalty(critic, tf.constant(real), tf.constant(fake),
                                  tf.constant(alpha)).numpy()
    assert np.isclose(got, expected, rtol=1e-5)


def test_gradient_penalty_is_differentiable_in_the_critic_weights():
    w = tf.Variable(tf.fill([28, 28], 0.1))
    real, fake = tf.ones([2, 28, 28]), tf.zeros([2, 28, 28])
    with tf.GradientTape() as tape:
        penalty = losses.gradient_penalty(_linear_critic(w), real, fake, tf.fill([2, 1, 1], 0.5))
    grad = tape.gradient(penalty, w).numpy()
    # d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w||
    norm = np.linalg.norm(w.numpy())
    np.testing.assert_allclose(grad, 2 * (norm - 1) * w.numpy() / norm, rtol=1e-4)


# --- RpGAN (R3GAN's relativistic pairing loss) and its R1 / R2 penalties ---------------------

import types  # noqa: E402


def test_rpgan_known_values_pair_each_real_with_its_own_fake():
    real = np.array([[2.0], [0.0]], "float32")
    fake = np.array([[0.0], [1.0]], "float32")
    rpgan = registry.loss("rpgan")
    assert not rpgan.probabilities and rpgan.generator_reads_real
    # real - fake = [2, -1]: D mean softplus([-2, 1]), G mean softplus([2, -1])
    d = (np.log1p(np.exp(-2.0)) + np.log1p(np.exp(1.0))) / 2  # 0.720095
    g = (np.log1p(np.exp(2.0)) + np.log1p(np.exp(-1.0))) / 2  # 1.220095
    assert np.isclose(rpgan.discriminator(real, fake).numpy(), d, rtol=1e-6)
    assert np.isclose(rpgan.generator(fake, real).numpy(), g, rtol=1e-6)
    # Pairs by position, not all real x fake pairs: other pairs, another value.
    assert not np.isclose(rpgan.discriminator(real, fake[::-1]).numpy(), d, rtol=1e-3)
    # Relativistic: a shift of every score leaves both losses unchanged.
    assert np.isclose(rpgan.discriminator(real + 5, fake + 5).numpy(), d, rtol=1e-6)
    # The other losses' G ignores D's outputs on reals.
    for name in ("bce", "hinge", "wgan-gp"):
        assert not registry.loss(name).generator_reads_real


def test_rpgan_penalties_of_a_linear_critic_are_gamma_over_two_times_its_squared_norm():
    # grad_x (w . x) = w at every x: R1 = R2 = ||w||^2, so --r1 / 2 and --r2 / 2 of it.
    rng = np.random.default_rng(0)
    w = tf.constant(rng.normal(size=(28, 28)) * 0.1, tf.float32)
    real, fake = (tf.constant(rng.uniform(size=(6, 28, 28)), tf.float32) for _ in range(2))
    norm2 = float(np.sum(w.numpy().astype(np.float64) ** 2))
    rpgan = registry.loss("rpgan")
    for r1, r2 in ((1.0, 0.0), (0.0, 4.0), (2.0, 6.0)):
        config = types.SimpleNamespace(r1=r1, r2=r2)
        got = rpgan.penalty(_linear_critic(w), real, fake, None, config).numpy()
        assert np.isclose(got, (r1 + r2) / 2 * norm2, rtol=1e-5), (r1, r2)
    assert rpgan.penalty(_linear_critic(w), real, fake, None,
                         types.SimpleNamespace(r1=0.0, r2=0.0)) is None  # off: no penalty


def test_zero_centred_penalty_is_at_the_given_images_with_per_sample_squared_norms():
    # critic(x) = 0.5 ||x||^2 has gradient x: R1 at the reals is mean_i ||real_i||^2, and R2
    # at the fakes mean_i ||fake_i||^2 (the squared norm over all of a sample's pixels and
    # channels, e.g. a pack's).
    rng = np.random.default_rng(4)
    real = rng.uniform(size=(5, 28, 28, 2)).astype("float32")
    fake = 3 * rng.uniform(size=(5, 28, 28, 2)).astype("float32")
    critic = lambda x: 0.5 * tf.reduce_sum(tf.square(x), axis=[1, 2, 3])[:, None]  # noqa: E731
    sq = lambda x: np.mean(np.sum(x.astype(np.float64) ** 2, axis=(1, 2, 3)))  # noqa: E731
    got = losses.zero_centred_penalty(critic, tf.constant(real)).numpy()
    assert np.isclose(got, sq(real), rtol=1e-5)
    rpgan = registry.loss("rpgan")
    got = rpgan.penalty(critic, tf.constant(real), tf.constant(fake), None,
                        types.SimpleNamespace(r1=2.0, r2=0.5)).numpy()
    assert np.isclose(got, sq(real) + 0.25 * sq(fake), rtol=1e-5)


def test_rpgan_penalty_is_differentiable_in_the_critic_weights():
    w = tf.Variable(tf.fill([28, 28], 0.1))
    real, fake = tf.ones([2, 28, 28]), tf.zeros([2, 28, 28])
    with tf.GradientTape() as tape:
        penalty = registry.loss("rpgan").penalty(_linear_critic(w), real, fake, None,
                                                 types.SimpleNamespace(r1=1.0, r2=3.0))
    # d/dw (1 + 3) / 2 ||w||^2 = 4 w
    np.testing.assert_allclose(tape.gradient(penalty, w).numpy(), 4 * w.numpy(), rtol=1e-5)
