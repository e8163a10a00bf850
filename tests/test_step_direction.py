"""Each update of the training step moves its network the right way, for every loss.

On one fixed batch: a D update makes D(real) rise and D(G(z)) fall; a G update makes
D(G(z)) rise (D's output is a probability for bce, a score for hinge, wgan-gp and rpgan). For
wgan-gp, D's loss is the Wasserstein term plus lambda times the gradient penalty, both
computed here from the networks, independently of gan.models.losses.

Shapes: B = 32 images [B, 28, 28] in [0, 1], noise [B, 100], alpha [B, 1, 1], D outputs [B, 1].
"""

import numpy as np
import pytest
import tensorflow as tf

from gan import config as config_lib
from gan.models import registry
from gan.training import step as step_lib

B, Z = 32, 100
LOSSES = tuple(registry.LOSSES)
GP_WEIGHT = 3.0  # not the default 10, so a step that ignored --gp_weight would show
R_WEIGHT = 0.5  # rpgan's --r1 and --r2 (gamma)


def fixed_batch(seed=0):
    """Real images [B, 28, 28] (a bright bar on faint noise, on the top half only; the
    bottom half black), D's and G's noise [B, Z] and WGAN-GP's interpolation weights
    [B, 1, 1]."""
    rng = np.random.default_rng(seed)
    real = rng.uniform(0, 0.1, (B, 28, 28))
    for i, row in enumerate(rng.integers(2, 10, B)):
        real[i, row:row + 3, 4:24] = 0.9
    real[:, 14:] = 0.0
    return (tf.constant(real, tf.float32),
            tf.constant(rng.normal(size=(B, Z)), tf.float32),
            tf.constant(rng.normal(size=(B, Z)), tf.float32),
            tf.constant(rng.uniform(0, 1, (B, 1, 1)), tf.float32))


def make_state(loss):
    """The state of `loss` with its penalties' weights: GP_WEIGHT, or R_WEIGHT for R1 and R2."""
    weights = {name: GP_WEIGHT if name == "gp_weight" else R_WEIGHT
               for name in registry.LOSSES[loss].options}
    return step_lib.create_state(config_lib.TrainConfig(seed=0, loss=loss, **weights))


def fakes_on_the_bottom_half(generator):
    """Sets the bias of G's output layer (Dense 784, sigmoid) to -30 on the top half's
    pixels, so G's images are black there (below 1e-12) and the real and fake images of
    fixed_batch light disjoint pixels."""
    kernel, bias = generator.layers[-2].get_weights()
    bias = bias.reshape(28, 28).copy()
    bias[:14] = -30.0
    generator.layers[-2].set_weights([kernel, bias.reshape(-1)])


def mean_output(state, images):
    """D's mean output on images [N, 28, 28] (training mode, as the step sees it)."""
    return float(tf.reduce_mean(state.discriminator(images, training=True)))


# Why the images are disjoint: Adam's first update moves every weight by its learning rate
# in the direction of its gradient's sign, and D's 200,960 first-layer weights dominate
# any sample's change of output. Where real and fake images light the same pixels, that
# update moves D(real) and D(fake) together by what they share (for fakes that are brighter
# than the reals, both fall, whatever the labels), while the loss only asks them apart.
# With disjoint pixels each half is moved through its own weights, so each moves the way
# its label asks, as in a GAN whose D already tells the two apart.
@pytest.mark.parametrize("loss", LOSSES)
def test_a_discriminator_update_raises_d_real_and_lowers_d_fake(loss):
    state = make_state(loss)
    fakes_on_the_bottom_half(state.generator)
    real, d_noise, _, alpha = fixed_batch()
    fakes = state.generator(d_noise, training=True)
    assert float(tf.reduce_max(fakes[:, :14])) < 1e-6
    real_before, fake_before = mean_output(state, real), mean_output(state, fakes)
    tf.function(step_lib.discriminator_step)(state, real, d_noise, None, alpha)
    real_after, fake_after = mean_output(state, real), mean_output(state, fakes)
    assert real_after > real_before + 0.05, (real_before, real_after)
    assert fake_after < fake_before - 0.05, (fake_before, fake_after)


@pytest.mark.parametrize("loss", LOSSES)
def test_a_generator_update_raises_d_of_its_fakes(loss):
    state = make_state(loss)
    real, _, g_noise, _ = fixed_batch()
    before = mean_output(state, state.generator(g_noise, training=True))
    tf.function(step_lib.generator_step)(state, g_noise, None, real)  # rpgan reads the reals
    after = mean_output(state, state.generator(g_noise, training=True))
    assert after > before + 1e-4, (before, after)


def test_wgan_gp_loss_is_the_wasserstein_term_plus_lambda_times_the_gradient_penalty():
    state = make_state("wgan-gp")
    real, d_noise, _, alpha = fixed_batch()
    d = state.discriminator
    fakes = state.generator(d_noise, training=True)
    # The critic's Wasserstein loss: mean score of the fakes minus mean score of the reals.
    wasserstein = float(tf.reduce_mean(d(fakes, training=True))
                        - tf.reduce_mean(d(real, training=True)))
    # The penalty: at x = alpha real + (1 - alpha) fake, each sample's gradient of the score
    # with respect to its own pixels ([B, 28, 28]; a sample's score depends only on its own
    # image), its L2 norm over the 784 pixels, and the mean over samples of (norm - 1)^2.
    x = alpha * real + (1.0 - alpha) * fakes
    with tf.GradientTape() as tape:
        tape.watch(x)
        scores = d(x, training=True)
    grads = tape.gradient(scores, x).numpy().astype(np.float64).reshape(B, -1)
    penalty = np.mean((np.sqrt((grads ** 2).sum(axis=1)) - 1.0) ** 2)
    # Neither term is negligible, so leaving either out (or lambda) would show.
    assert abs(wasserstein) > 1e-3 and GP_WEIGHT * penalty > 1e-3
    metrics = tf.function(step_lib.discriminator_step)(state, real, d_noise, None, alpha)
    expected = wasserstein + GP_WEIGHT * penalty
    assert float(metrics["d_loss"]) == pytest.approx(expected, rel=1e-5, abs=1e-6)


# --diversity: the mode-seeking term, computed here from G's images, and its direction.


def pair_spread(images, noise):
    """mean |x_2i - x_2i+1| / mean |z_2i - z_2i+1| over the pairs of a batch, in numpy."""
    images, noise = np.asarray(images, np.float64), np.asarray(noise, np.float64)
    return (np.abs(images[0::2] - images[1::2]).mean()
            / np.abs(noise[0::2] - noise[1::2]).mean())


def test_with_diversity_g_loss_adds_lambda_over_the_pairs_spread():
    weight = 0.25
    state = step_lib.create_state(config_lib.TrainConfig(seed=0, diversity=weight))
    _, _, g_noise, _ = fixed_batch()
    fakes = state.generator(g_noise, training=True)
    p_fake = np.clip(state.discriminator(fakes, training=True).numpy().astype(np.float64),
                     1e-7, 1 - 1e-7)
    adversarial = -np.mean(np.log(p_fake))  # the non-saturating BCE against 1
    term = 1.0 / (pair_spread(fakes, g_noise) + 1e-5)
    assert term > 1.0 and adversarial > 0.1  # both show in the sum
    metrics = tf.function(step_lib.generator_step)(state, g_noise)
    assert float(metrics["g_loss"]) == pytest.approx(adversarial + weight * term, rel=1e-5)


def test_a_generator_update_with_a_large_diversity_weight_spreads_the_pairs():
    state = step_lib.create_state(config_lib.TrainConfig(seed=0, diversity=100.0))
    _, _, g_noise, _ = fixed_batch()
    before = pair_spread(state.generator(g_noise, training=True), g_noise)
    for _ in range(3):
        tf.function(step_lib.generator_step)(state, g_noise)
    after = pair_spread(state.generator(g_noise, training=True), g_noise)
    assert after > 1.2 * before, (before, after)


@pytest.mark.parametrize("diversity", [0.0, 1.0])
def test_with_diversity_each_pair_is_asked_for_one_label(diversity):
    state = step_lib.create_state(config_lib.TrainConfig(seed=0, conditional=True,
                                                         diversity=diversity))
    labels = step_lib.draw_step_noise(state, B)["fake_labels"].numpy()
    assert labels.shape == (B,) and set(labels) <= set(range(10)) and len(set(labels)) > 3
    # B/2 = 16 pairs of uniform labels: all equal by chance has probability 1e-16
    assert np.array_equal(labels[0::2], labels[1::2]) == bool(diversity)
