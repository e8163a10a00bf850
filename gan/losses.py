"""GAN losses. The original's: binary cross-entropy on the discriminator's probabilities.

Discriminator: real labelled 1, fake labelled 0, mean BCE over the 2B images (as the original
trained on the concatenated 64). Generator: the non-saturating loss, BCE of D(G(z)) against 1.
"""

import tensorflow as tf

EPSILON = 1e-7  # Keras's clip for probabilities, so losses match `train_on_batch`


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
