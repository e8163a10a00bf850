"""Stacked MNIST, the mode-collapse benchmark of the GAN literature (Metz et al. 2017,
VEEGAN, PacGAN): three MNIST training digits drawn at random stacked as the three channels of
one image [28, 28, 3], labelled 100a + 10b + c by its digits (a, b, c): 1,000 modes. What
this module builds is any Dataset of gan.datasets with `stacked_from` (Stacked MNIST is
the one registered): C images of the source dataset as the C channels of one image.

The stream is built on the fly from the source's training split, like gan.data's: channel c
is the index stream of gan.datasets.load.index_stream with its own seed (channel_seed), so the batch
of step s is a pure function of (seed, s) and a resumed run sees the same batches; no copy
of the stacked images is stored.

Its evaluation (modes covered and KL from uniform, PacGAN's protocol) is gan.evaluation.evaluator's
"modes" evaluation.
"""

import numpy as np
import tensorflow as tf

from gan import datasets
from gan.datasets import load as data


def channel_seed(seed, channel, channels):
    """The seed of channel `channel`'s index stream (of `channels`): distinct per channel,
    so the images of the channels are drawn independently."""
    return seed * channels + channel


def triple_labels(classes, base=10):
    """Labels of class tuples int [..., C] (the channels' classes, most significant first):
    100a + 10b + c of digits (a, b, c); with another base K, of per-channel labels in
    0..K-1 (--clusters=K: ka K^2 + kb K + kc)."""
    labels = classes[..., 0]
    for c in range(1, classes.shape[-1]):
        labels = labels * base + classes[..., c]
    return labels


def cluster_prior(channel_prior, channels):
    """The shares float [K ** channels] of the tuple labels (triple_labels, base K) given one
    channel's label shares [K]: the channels are drawn independently, so the product."""
    p = np.asarray(channel_prior, np.float64)
    prior = p
    for _ in range(channels - 1):
        prior = np.multiply.outer(prior, p)
    return prior.reshape(-1)


def make_batches(images, labels, batch_size, seed, start_step=0, steps_per_element=1,
                 base=None, dataset="stacked_mnist"):
    """The training stream of the stacked `dataset`, resumable at any step, as
    gan.datasets.load.make_batches.

    images uint8 [N, 28, 28] and labels [N] in 0..base-1: the source's training split
    (arrays or tensors; MNIST's), labelled by class (base None: the dataset's classes) or
    (--clusters=base) by k-means cluster.
    Yields (images float32 [K, B, 28, 28, C] in [0, 1], labels int32 [K, B] = 100a + 10b + c
    for C = 3, triple_labels in `base`) with K = steps_per_element, B = batch_size; channel c
    of the j-th image of the stream is image number j of channel c's index stream."""
    channels = datasets.get(dataset).channels
    base = base or datasets.get(dataset).num_classes
    images, labels = tf.constant(images), tf.constant(labels)
    k, n = steps_per_element, int(labels.shape[0])
    streams = tuple(data.index_stream(n, channel_seed(seed, c, channels), start_step * batch_size,
                                      k * batch_size) for c in range(channels))

    def gather(*indices):
        idx = tf.reshape(tf.stack(indices, axis=-1), [k, batch_size, channels])
        x = tf.cast(tf.gather(images, idx), tf.float32) / 255.0  # [K, B, C, 28, 28]
        return tf.transpose(x, [0, 1, 3, 4, 2]), triple_labels(tf.gather(labels, idx), base)

    return tf.data.Dataset.zip(streams).map(gather).prefetch(tf.data.AUTOTUNE)
