"""GAN losses. The original's: binary cross-entropy on the discriminator's probabilities;
also hinge, WGAN-GP and RpGAN (on unbounded scores, see gan.models.networks for which D outputs
which).

Discriminator: real labelled 1, fake labelled 0, mean BCE over the 2B images (as the original
trained on the concatenated 64). Generator: the non-saturating loss, BCE of D(G(z)) against 1.
"""

import tensorflow as tf

# Probabilities are clipped to [EPSILON, 1 - EPSILON] (Keras's eager BCE does the same).
# Inside `train_on_batch` Keras 3 computes BCE from the sigmoid's logits instead, without a
# clip: the two agree to float rounding until D saturates (outputs beyond the clip), where
# the clip gives a zero gradient and the original a small one. Kept on purpose: switching
# to logits changes the rounding of every step, so every run's numbers, and the default
# run saturates D on only a few real images (tests/test_step_original.py).
EPSILON = 1e-7


def bce(labels, probabilities):
    """Mean binary cross-entropy of probabilities (clipped to [eps, 1 - eps]) against labels."""
    p = tf.clip_by_value(probabilities, EPSILON, 1.0 - EPSILON)
    return -tf.reduce_mean(labels * tf.math.log(p) + (1.0 - labels) * tf.math.log(1.0 - p))


def discriminator_bce(p_real, p_fake):
    """D's loss on [real; fake] probabilities, each [B, 1]: real -> 1, fake -> 0."""
    p = tf.concat([p_real, p_fake], axis=0)
    labels = tf.concat([tf.ones_like(p_real), tf.zeros_like(p_fake)], axis=0)
    return bce(labels, p)


def generator_bce(p_fake):
    """Non-saturating generator loss: BCE of D(G(z)) [B, 1] against label 1."""
    return bce(tf.ones_like(p_fake), p_fake)


# --- losses on unbounded discriminator scores (hinge, WGAN-GP) ------------------------------

def discriminator_hinge(s_real, s_fake):
    """Hinge loss on scores [B, 1]: mean relu(1 - s_real) + mean relu(1 + s_fake)."""
    return tf.reduce_mean(tf.nn.relu(1.0 - s_real)) + tf.reduce_mean(tf.nn.relu(1.0 + s_fake))


def discriminator_wasserstein(s_real, s_fake):
    """The critic's Wasserstein loss on scores [B, 1]: mean s_fake - mean s_real (the gradient
    penalty is added separately, see `gradient_penalty`)."""
    return tf.reduce_mean(s_fake) - tf.reduce_mean(s_real)


def generator_score(s_fake):
    """Generator loss of hinge and WGAN-GP: -mean score of the fakes [B, 1]."""
    return -tf.reduce_mean(s_fake)


def interpolation_weights(rng, batch):
    """WGAN-GP's interpolation weights: one per sample, uniform in [0, 1], shape [B, 1, 1]
    (broadcast over the 28x28 pixels). Drawn from the tf.random.Generator `rng`."""
    return rng.uniform([batch, 1, 1], 0.0, 1.0)


def gradient_penalty(critic, real_images, fake_images, alpha):
    """WGAN-GP's penalty (Gulrajani et al. 2017): mean over samples of
    (||grad_x critic(x)||_2 - 1)^2 at x = alpha * real + (1 - alpha) * fake.

    critic: images [B, 28, 28] -> scores [B, 1]; alpha [B, 1, 1] from `interpolation_weights`.
    The norm is per sample, over all its pixels. Differentiable (for the critic's update).
    """
    x = alpha * real_images + (1.0 - alpha) * fake_images
    with tf.GradientTape() as tape:
        tape.watch(x)
        scores = critic(x)
    grads = tape.gradient(scores, x)  # [B, 28, 28]; samples are independent, so per-sample
    norms = tf.sqrt(tf.reduce_sum(tf.square(grads), axis=tf.range(1, tf.rank(grads))) + 1e-12)
    return tf.reduce_mean(tf.square(norms - 1.0))


def discriminator_relativistic(s_real, s_fake):
    """RpGAN's D loss (Huang et al. 2024) on paired scores [P, 1], pair i = (real i, fake i):
    mean softplus(-(s_real - s_fake))."""
    return tf.reduce_mean(tf.nn.softplus(s_fake - s_real))


def generator_relativistic(s_fake, s_real):
    """RpGAN's G loss on the same pairs [P, 1]: mean softplus(-(s_fake - s_real))."""
    return tf.reduce_mean(tf.nn.softplus(s_real - s_fake))


def zero_centred_penalty(critic, images):
    """E ||grad_x critic(x)||^2 over the samples x of images [N, ...] (R1 at reals, R2 at
    fakes; Mescheder et al. 2018), the squared norm per sample over all its pixels (and
    channels: a pack of --pack images is one sample). critic: images -> scores [N, 1].
    Differentiable (for the critic's update); the weight gamma / 2 is the caller's."""
    with tf.GradientTape() as tape:
        tape.watch(images)
        scores = critic(images)
    grads = tape.gradient(scores, images)  # [N, ...]; samples are independent, so per-sample
    return tf.reduce_mean(tf.reduce_sum(tf.square(grads), axis=tf.range(1, tf.rank(grads))))


def classification(logits, labels):
    """AC-GAN's auxiliary loss (Odena et al. 2017): mean softmax cross-entropy of label
    logits [B, K] against labels int32 [B]."""
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=labels, logits=tf.cast(logits, tf.float32)))


def mode_seeking(images, noise, eps=1e-5):
    """MSGAN's diversity term (Mao et al. 2019) over the pairs (2i, 2i+1) of a batch:
    1 / (mean |x_2i - x_2i+1| / mean |z_2i - z_2i+1| + eps), for images x [B, ...] made from
    noise z [B, Z], B even. Large when different noise gives alike images; G minimizing it
    spreads its samples out (more variety, higher recall)."""
    images = tf.cast(images, tf.float32)
    apart = tf.reduce_mean(tf.abs(images[0::2] - images[1::2]))
    return 1.0 / (apart / tf.reduce_mean(tf.abs(noise[0::2] - noise[1::2])) + eps)


# --- the losses --model's networks are trained with, by name (gan.models.registry.LOSSES) ------


class Loss:
    """A GAN loss, as the step uses it (gan.training.step): D's loss on its outputs for the real and
    the fake halves of a batch ([P, 1] each, row i of one paired with row i of the other),
    G's loss on D's outputs for its fakes (and for real images, if `generator_reads_real`),
    and an optional penalty added to D's loss.

    probabilities: D ends in a sigmoid and outputs P(real) (gan.models.networks), else an unbounded
    score. interpolates: the penalty needs one interpolation weight per sample per D update
    (`interpolation_weights`), drawn with the step's other random numbers.
    generator_reads_real: G's loss compares its fakes with reals, so the G update also runs
    D on a real batch (only then: the other losses' G update is unchanged).
    """

    probabilities = False
    interpolates = False
    generator_reads_real = False

    def discriminator(self, out_real, out_fake):
        raise NotImplementedError

    def generator(self, out_fake, out_real=None):
        """G's loss on D's outputs for the fakes [P, 1]; out_real [P, 1], D's outputs for
        reals, is given only when `generator_reads_real` (else None)."""
        raise NotImplementedError

    def penalty(self, critic, real_images, fake_images, alpha, config):
        """What D's loss adds, given the critic (D's inputs -> D's outputs), the batch as D
        sees it (packed with --pack), the interpolation weights (None unless `interpolates`)
        and the run's config; None: no penalty."""
        return None


class _BCE(Loss):
    """The original's: BCE with real -> 1, fake -> 0; G's non-saturating BCE against 1."""

    probabilities = True

    def discriminator(self, out_real, out_fake):
        return discriminator_bce(out_real, out_fake)

    def generator(self, out_fake, out_real=None):
        return generator_bce(out_fake)


class _Hinge(Loss):
    def discriminator(self, out_real, out_fake):
        return discriminator_hinge(out_real, out_fake)

    def generator(self, out_fake, out_real=None):
        return generator_score(out_fake)


class _WGANGP(Loss):
    """The Wasserstein critic loss plus --gp_weight x the gradient penalty."""

    interpolates = True

    def discriminator(self, out_real, out_fake):
        return discriminator_wasserstein(out_real, out_fake)

    def generator(self, out_fake, out_real=None):
        return generator_score(out_fake)

    def penalty(self, critic, real_images, fake_images, alpha, config):
        return config.gp_weight * gradient_penalty(critic, real_images, fake_images, alpha)


class _RpGAN(Loss):
    """R3GAN's relativistic pairing loss (Huang et al., NeurIPS 2024, "The GAN is dead; long
    live the GAN!"): each real paired with one fake, D asked to score the real above its
    fake, G its fake above its real; plus the zero-centred gradient penalties
    --r1 / 2 x R1 (at the reals) and --r2 / 2 x R2 (at the fakes), which the paper's recipe
    uses together with one gamma."""

    generator_reads_real = True

    def discriminator(self, out_real, out_fake):
        return discriminator_relativistic(out_real, out_fake)

    def generator(self, out_fake, out_real=None):
        return generator_relativistic(out_fake, out_real)

    def penalty(self, critic, real_images, fake_images, alpha, config):
        terms = [gamma / 2.0 * zero_centred_penalty(critic, images)
                 for gamma, images in ((config.r1, real_images), (config.r2, fake_images))
                 if gamma]  # a weight of 0 costs no double backprop
        return tf.add_n(terms) if terms else None


BCE, HINGE, WGAN_GP, RPGAN = _BCE(), _Hinge(), _WGANGP(), _RpGAN()
