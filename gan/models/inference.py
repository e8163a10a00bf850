"""Using a trained generator: seeded noise, batched generation, uint8 pixels, and a
SavedModel export that loads with TensorFlow alone.

Shapes: N images, Z = noise size; images [N, 28, 28].
"""

import json
import math
import os
import shutil
import tempfile

import tensorflow as tf

from gan import datasets, files


def sample_noise(num, noise_dim, seed, truncation=0.0):
    """Noise [num, noise_dim] from N(0, 1), a pure function of its arguments (a stateless
    draw), so a seed gives the same digits in any process and in the exported model.

    truncation > 0 draws each number from N(0, 1) truncated to [-truncation, truncation]
    instead (the "truncation trick" of Brock et al. 2019): samples from the dense middle
    of the noise distribution, typically better-formed digits at the cost of variety.
    0 (the default) is plain N(0, 1). It is drawn exactly by the inverse CDF of a uniform
    on [Phi(-t), Phi(t)], so it is another (still seeded) draw than the untruncated one.
    """
    truncation = float(truncation)
    if not truncation >= 0:
        raise ValueError(f"truncation must be >= 0 (0 = off), got {truncation}")
    seed = tf.stack([seed, 0])
    if truncation == 0:
        return tf.random.stateless_normal([num, noise_dim], seed=seed)
    # Phi(-t) in float64: for large t the float32 bound would round to 0 (then erfinv(-1)).
    low = 0.5 * math.erfc(truncation / math.sqrt(2.0))
    u = tf.random.stateless_uniform([num, noise_dim], seed=seed, minval=low, maxval=1.0 - low,
                                    dtype=tf.float64)
    z = math.sqrt(2.0) * tf.math.erfinv(2.0 * u - 1.0)
    return tf.cast(tf.clip_by_value(z, -truncation, truncation), tf.float32)


def run_truncation(architecture, asked=None):
    """The truncation to sample a checkpoint's generator at: `asked` (a --truncation given
    by hand), else the one its run recorded (gan.train --truncation; the architecture dict
    of checkpoints.restore_generator), as gan.evaluate, gan.sample and an export's `sample`
    signature draw the noise. 0 = off."""
    return float(architecture.get("truncation", 0.0) if asked is None else asked)


def sampling_labels(architecture, num, seed=0):
    """The labels int32 [num] a checkpoint's generator is sampled with (architecture: the
    dict of checkpoints.restore_generator): None for an unconditional one; digits 0, 1, ...,
    9, 0, ... (equal shares) for a digit-conditional one; for a --clusters one, cluster ids
    in the clusters' shares of the training images ("cluster_prior"), so its samples follow
    the data's mix like an unconditional generator's: each cluster gets its share of `num`
    (rounded by largest remainder, so the counts add up to `num` exactly, without the
    spread of independent draws), in an order shuffled by `seed`. A label of several parts
    (Stacked MNIST's: one cluster id per channel, label ka K^2 + kb K + kc) is drawn part by
    part: each part's ids get their shares of `num` so, each part shuffled on its own, so
    the parts are independent as the real triples' channels are. (One quota over the K^3
    tuples would not do: with more tuples than samples it keeps only the likeliest tuples,
    and the rarer clusters go missing from every channel.)

    The rule is TensorFlow ops (label_rule), so an exported generator's `sample` signature
    draws the same labels as this function and `python -m gan.sample`."""
    rule = label_rule(architecture)
    return None if rule is None else rule(num, seed).numpy()


def label_rule(architecture):
    """The function (num, seed) -> labels int32 [num] of sampling_labels, in TensorFlow ops
    (num, seed: ints or int32 scalars), or None for an unconditional architecture."""
    if not architecture.get("conditional"):
        return None
    prior = architecture.get("cluster_prior")
    if prior is None:  # every class in turn
        classes = datasets.of_architecture(architecture).num_classes
        return lambda num, seed: tf.range(num, dtype=tf.int32) % classes
    base = architecture.get("clusters") or len(prior)  # K
    parts = datasets.of_architecture(architecture).label_parts(base)
    joint = tf.reshape(tf.constant(prior, tf.float64), [base] * parts)  # [K, ..., K]
    # Each part's shares [K]: the joint's sum over the other parts.
    shares_of = [tf.reduce_sum(joint, axis=[a for a in range(parts) if a != part])
                 if parts > 1 else joint for part in range(parts)]

    def quota(shares, num, seed, stream):
        """ids int32 [num] in 0..K-1: each id its share of num (largest remainders),
        shuffled by the stateless stream [seed, stream]."""
        shares = shares / tf.reduce_sum(shares) * tf.cast(num, tf.float64)  # [K]
        counts = tf.cast(tf.floor(shares), tf.int32)
        # the num - sum(counts) ids with the largest remainders get one more each
        missing = num - tf.reduce_sum(counts)
        order = tf.argsort(shares - tf.cast(counts, tf.float64), direction="DESCENDING",
                           stable=True)
        counts += tf.scatter_nd(order[:missing, None], tf.ones([missing], tf.int32),
                                tf.shape(counts))
        ids = tf.repeat(tf.range(tf.size(counts), dtype=tf.int32), counts)  # [num]
        return tf.random.experimental.stateless_shuffle(
            ids, seed=tf.stack([tf.cast(seed, tf.int32), stream]))

    def clusters(num, seed):
        num = tf.convert_to_tensor(num, tf.int32)
        # Part p (most significant first) on stream [seed, 1 + p]: [seed, 0] is the
        # noise's (sample_noise).
        labels = quota(shares_of[0], num, seed, 1)
        for part in range(1, parts):
            labels = labels * base + quota(shares_of[part], num, seed, 1 + part)
        return labels

    return clusters


def to_uint8(images):
    """Pixels in [0, 1] (any shape) -> uint8 0..255, rounded to nearest."""
    return tf.cast(tf.round(tf.clip_by_value(images, 0.0, 1.0) * 255.0), tf.uint8)


def generate(generator, noise, labels=None, batch_size=1000):
    """The one way to draw images: generator(noise) in inference mode, in batches of
    `batch_size`: noise [N, Z] -> float32 tensor [N, 28, 28] in [0, 1]. labels int [N]: what
    a conditional generator is asked to draw (sampling_labels); None for an unconditional
    one. Works eagerly and inside a tf.function (N must be static there)."""
    from gan.models import networks as models

    noise = tf.convert_to_tensor(noise, tf.float32)
    if labels is not None:
        labels = tf.convert_to_tensor(labels, tf.int32)
    parts = [models.call(generator, noise[i:i + batch_size],
                         None if labels is None else labels[i:i + batch_size], training=False)
             for i in range(0, int(noise.shape[0]), batch_size)]
    return parts[0] if len(parts) == 1 else tf.concat(parts, axis=0)


class GeneratorModule(tf.Module):
    """What the SavedModel holds: the generator, its noise size, how many labels it takes and
    its architecture JSON, and two functions that are also its signatures (Z = noise size):

      generate -> {"images": uint8 [N, 28, 28], 0-255}   ("serving_default")
          unconditional: generate(noise float32 [N, Z])
          conditional:   generate(noise float32 [N, Z], labels int32 [N]): the digit (or,
                         for a --clusters run, the cluster id) of each image, in
                         0..num_classes-1; other values, or N rows of noise but not of
                         labels, raise InvalidArgumentError.
      sample(num int32 [], seed int32 []) -> {"images": uint8 [num, 28, 28]}: the digits of
          `python -m gan.sample --num=num --seed=seed`: noise sample_noise(num, Z, seed) at
          the run's sampling truncation (run_truncation), and
          for a conditional generator the labels of sampling_labels (digits 0, 1, ..., 9,
          0, ...; cluster ids drawn with the clusters' sizes for a --clusters run).
    """

    def __init__(self, generator, architecture):
        from gan.models import networks as models

        super().__init__(name="gan_generator")
        noise_dim = int(architecture["noise_dim"])
        # the labels it takes, as models.build_generator builds it; 0: unconditional
        classes = (models.architecture_label_count(architecture)
                   if models.is_conditional(architecture) else 0)
        self.generator = generator
        self.noise_dim = tf.Variable(noise_dim, trainable=False, name="noise_dim")
        self.num_classes = tf.Variable(classes, trainable=False, name="num_classes")
        self.architecture = tf.Variable(json.dumps(architecture, sort_keys=True),
                                        trainable=False, name="architecture")
        noise_spec = tf.TensorSpec([None, noise_dim], tf.float32, "noise")
        rule = label_rule(architecture)
        truncation = run_truncation(architecture)

        if classes:
            @tf.function(input_signature=[noise_spec, tf.TensorSpec([None], tf.int32, "labels")])
            def generate(noise, labels):
                checks = [
                    tf.debugging.assert_equal(tf.shape(labels)[0], tf.shape(noise)[0], message=(
                        "labels must have one entry per row of noise")),
                    tf.debugging.assert_non_negative(labels, message="labels must be >= 0"),
                    tf.debugging.assert_less(labels, classes, message=(
                        f"labels must be < {classes} (the classes this generator knows)"))]
                with tf.control_dependencies(checks):
                    images = models.call(self.generator, noise, labels)
                return {"images": to_uint8(images)}

            def inputs(num, seed):
                return sample_noise(num, noise_dim, seed, truncation), rule(num, seed)
        else:
            @tf.function(input_signature=[noise_spec])
            def generate(noise):
                return {"images": to_uint8(models.call(self.generator, noise))}

            def inputs(num, seed):
                return (sample_noise(num, noise_dim, seed, truncation),)

        @tf.function(input_signature=[tf.TensorSpec([], tf.int32, "num"),
                                      tf.TensorSpec([], tf.int32, "seed")])
        def sample(num, seed):
            return generate(*inputs(num, seed))

        self.generate, self.sample = generate, sample


def export_saved_model(generator, architecture, out_dir, overwrite=False):
    """Writes a SavedModel of `generator` (see GeneratorModule) to `out_dir`.

    The model is written to a temporary folder beside `out_dir` and moved into place only
    when complete. An existing non-empty `out_dir` raises FileExistsError unless
    `overwrite`, in which case it is replaced only after the new export succeeded.
    """
    out_dir = os.path.abspath(out_dir)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise FileExistsError(f"{out_dir} is a file, not a folder")
    if os.path.isdir(out_dir) and os.listdir(out_dir) and not overwrite:
        raise FileExistsError(f"{out_dir} already exists and is not empty")
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=".tmp-export-")
    # mkdtemp's folder is private (0700); the export is for others (a serving process) to
    # read, so it gets the permissions a plain mkdir gives (usually 0755).
    os.chmod(tmp, 0o777 & ~files.umask())
    try:
        module = GeneratorModule(generator, architecture)
        tf.saved_model.save(module, tmp, signatures={"serving_default": module.generate,
                                                     "sample": module.sample})
        if os.path.isdir(out_dir):  # swap, so a failure above leaves the old export intact
            old = tmp + "-old"
            os.replace(out_dir, old)
            os.replace(tmp, out_dir)
            shutil.rmtree(old)
        else:
            os.replace(tmp, out_dir)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp)
    return out_dir
