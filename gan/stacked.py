"""Stacked MNIST, the mode-collapse benchmark of the GAN literature (Metz et al. 2017,
VEEGAN, PacGAN): three MNIST training digits drawn at random stacked as the three channels of
one image [28, 28, 3], labelled 100a + 10b + c by its digits (a, b, c): 1,000 modes.

The stream is built on the fly from MNIST's training split, like gan.data's: channel c is
the index stream of gan.data.index_stream with its own seed (channel_seed), so the batch of
step s is a pure function of (seed, s) and a resumed run sees the same batches; no copy of
the triples is stored.

Evaluation (PacGAN's protocol): each channel of each sample is classified by the committed
MNIST classifier (gan.classifier); the modes covered are the triples seen at least once, and
KL(p_samples || uniform over 1,000) in nats measures how unevenly the samples spread over
them; beside them the same figures for as many real triples (the floor).
"""

import functools

import numpy as np
import tensorflow as tf

from gan import classifier, data

CHANNELS = 3
NUM_MODES = 10 ** CHANNELS
DEFAULT_NUM_SAMPLES = 26000  # PacGAN's (and VEEGAN's) evaluation size
FLOOR_SEED = 0  # which real triples make the floor; fixed so floors are comparable


def channel_seed(seed, channel):
    """The seed of channel `channel`'s index stream: distinct per channel, so the three
    digits of an image are drawn independently."""
    return seed * CHANNELS + channel


def triple_labels(digits, base=10):
    """Labels 100a + 10b + c of digits int [..., 3] (a, b, c: the channels' digits); with
    another base K, of per-channel labels in 0..K-1 (--clusters=K: ka K^2 + kb K + kc)."""
    return (digits[..., 0] * base + digits[..., 1]) * base + digits[..., 2]


def cluster_prior(channel_prior):
    """The shares float [K^3] of the triple labels (triple_labels, base K) given one
    channel's label shares [K]: the channels are drawn independently, so the product."""
    p = np.asarray(channel_prior, np.float64)
    return np.einsum("i,j,k->ijk", p, p, p).reshape(-1)


def make_batches(images, labels, batch_size, seed, start_step=0, steps_per_element=1,
                 base=10):
    """The Stacked MNIST training stream, resumable at any step, as gan.data.make_batches.

    images uint8 [N, 28, 28] and labels [N] in 0..base-1: MNIST's training split (arrays or
    tensors), labelled by digit or (--clusters=base) by k-means cluster.
    Yields (images float32 [K, B, 28, 28, 3] in [0, 1], labels int32 [K, B] = 100a + 10b + c,
    triple_labels in `base`) with K = steps_per_element, B = batch_size; channel c of the
    j-th image of the stream is digit number j of channel c's index stream."""
    images, labels = tf.constant(images), tf.constant(labels)
    k, n = steps_per_element, int(labels.shape[0])
    streams = tuple(data.index_stream(n, channel_seed(seed, c), start_step * batch_size,
                                      k * batch_size) for c in range(CHANNELS))

    def gather(*indices):
        idx = tf.reshape(tf.stack(indices, axis=-1), [k, batch_size, CHANNELS])
        x = tf.cast(tf.gather(images, idx), tf.float32) / 255.0  # [K, B, 3, 28, 28]
        return tf.transpose(x, [0, 1, 3, 4, 2]), triple_labels(tf.gather(labels, idx), base)

    return tf.data.Dataset.zip(streams).map(gather).prefetch(tf.data.AUTOTUNE)


# --- evaluation ---------------------------------------------------------------------------


def classify_triples(images, model=None):
    """The classifier's triples int [N] (100a + 10b + c) of images [N, 28, 28, 3] in [0, 1]:
    each channel classified on its own as an MNIST digit."""
    images = np.asarray(images, np.float32)
    if images.ndim != 4 or images.shape[1:] != (28, 28, CHANNELS):
        raise ValueError(f"expected Stacked MNIST images [N, 28, 28, 3], got {list(images.shape)}")
    digits = [np.argmax(classifier.features_and_probs(images[..., c], model)[1], axis=1)
              for c in range(CHANNELS)]
    return triple_labels(np.stack(digits, axis=-1))


def mode_metrics(triples):
    """{"num_samples", "modes_covered": distinct triples seen (of 1,000), "kl": KL(p ||
    uniform over the 1,000 triples) in nats, "kl_channels", "dependence"} of triples int [N],
    p the triples' frequencies. KL = sum_t p_t ln(1000 p_t): 0 for a perfectly even spread,
    ln 1000 for one triple. It splits exactly into kl_channels, the sum over the channels of
    KL(p_c || uniform over 10 digits) (uneven digits within a channel), plus dependence, the
    total correlation KL(p || p_a p_b p_c) (digits that go together across channels)."""
    triples = np.asarray(triples)
    counts = np.bincount(triples, minlength=NUM_MODES)
    p = counts / len(triples)
    kl = _kl_from_uniform(p)
    joint = p.reshape((10,) * CHANNELS)  # [a, b, c]
    kl_channels = sum(_kl_from_uniform(joint.sum(axis=tuple(a for a in range(CHANNELS) if a != c)))
                      for c in range(CHANNELS))
    return {"num_samples": int(len(triples)), "modes_covered": int(np.count_nonzero(counts)),
            "kl": kl, "kl_channels": kl_channels, "dependence": kl - kl_channels}


def _kl_from_uniform(p):
    """KL(p || uniform) in nats of frequencies p [M] summing to 1."""
    seen = p[p > 0]
    return float(np.sum(seen * np.log(seen * len(p))))


@functools.lru_cache(maxsize=2)
def _training_digits(data_dir):
    """The classifier's digit for each of MNIST's 60,000 training images, int [60000]."""
    images, _ = data.load_split("mnist", "train", data_dir)
    return np.argmax(classifier.features_and_probs(images / 255.0)[1], axis=1)


def real_floor(num_samples=DEFAULT_NUM_SAMPLES, data_dir=None):
    """mode_metrics of num_samples real Stacked MNIST images (three training digits drawn
    uniformly at random, seeded by FLOOR_SEED), classified as generated ones are: what a
    perfect generator reaches at that sample size."""
    digits = _training_digits(data.resolve_data_dir(data_dir))
    rng = np.random.default_rng(FLOOR_SEED)
    return mode_metrics(triple_labels(digits[rng.integers(len(digits),
                                                          size=(num_samples, CHANNELS))]))


def evaluate_images(images):
    """mode_metrics of generated images [N, 28, 28, 3] in [0, 1]."""
    return mode_metrics(classify_triples(images))


def format_table(generated, floor):
    """The readable table: modes and KL, generated beside the real floor."""
    n = generated["num_samples"]
    return "\n".join([
        f"{'':<38}  {'generated':>10}  {f'real triples ({n})':>20}",
        f"{'modes covered (of 1000, higher)':<38}  {generated['modes_covered']:>10}  "
        f"{floor['modes_covered']:>20}",
        f"{'KL(samples || uniform), nats (lower)':<38}  {generated['kl']:>10.4f}  "
        f"{floor['kl']:>20.4f}",
        f"{'  of which: uneven digits per channel':<38}  {generated['kl_channels']:>10.4f}  "
        f"{floor['kl_channels']:>20.4f}",
        f"{'  of which: dependence across channels':<38}  {generated['dependence']:>10.4f}  "
        f"{floor['dependence']:>20.4f}",
    ])


def training_eval(images, step, data_dir=None):
    """What training records every --eval_every steps on Stacked MNIST (eval_lib.training_eval
    passes its samples [N, 28, 28, 3]): (scalars eval/modes_covered and eval/kl, the log line
    with the real floor in brackets)."""
    num_samples = len(images)
    generated, floor = evaluate_images(images), real_floor(num_samples, data_dir)
    scalars = {"eval/modes_covered": generated["modes_covered"], "eval/kl": generated["kl"]}
    line = (f"eval at epoch {step} ({num_samples} samples; [real floor]): "
            f"modes={generated['modes_covered']} [{floor['modes_covered']}]  "
            f"kl={generated['kl']:.4f} [{floor['kl']:.4f}]")
    return scalars, line
