"""MNIST-like data: loading from TFDS (failing fast offline), the resumable batch stream,
and k-means clusters of the images for self-conditioning.

The training stream is a pure function of (seed, position): data epoch e is the stateless
permutation `shuffle(range(N), seed=[seed, e])`, and the stream is those permutations one
after another. Resuming at step s therefore needs only s (which the checkpoint holds), not a
checkpointed `tf.data` iterator, whose shuffle buffer of images would make every checkpoint
~190 MB.
"""

import functools
import glob
import hashlib
import os
import socket
import threading

import numpy as np
import tensorflow as tf

from gan import datasets
from gan.files import cache_dir, resolve_data_dir, write_cached_arrays

DOWNLOAD_HOST = ("storage.googleapis.com", 443)


class DataUnavailableError(RuntimeError):
    """The dataset is not in the data folder and cannot be downloaded."""


def network_reachable(address=DOWNLOAD_HOST, timeout=3.0):
    """True if a TCP connection to `address` opens within `timeout` seconds (DNS included)."""
    result = []

    def probe():
        try:
            socket.create_connection(address, timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def missing_data_message(name, data_dir):
    """One line (a refusal's): what is missing and both ways to provide it."""
    return (
        f"--data_dir={data_dir}: the '{name}' dataset is not prepared there and it cannot be "
        "downloaded (no network). Prepare it from its four IDX files (train-images-idx3-"
        f"ubyte.gz, ...) with `python -m gan.data --dataset={name} "
        f"--prepare_from=DIR_WITH_IDX_FILES --data_dir={data_dir}`, or copy an already "
        f"prepared TFDS folder '{name}/3.0.1/' into {data_dir}, or point --data_dir or "
        "$TFDS_DATA_DIR at the folder that holds it."
    )


def _tfds():
    import tensorflow_datasets as tfds  # heavy import, only where data is really loaded

    return tfds


def data_folder(data_dir=None):
    """The folder TFDS reads (files.resolve_data_dir); DataUnavailableError if it is a file."""
    folder = resolve_data_dir(data_dir)
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise DataUnavailableError(f"the data folder {folder} (--data_dir, else "
                                   "$TFDS_DATA_DIR) is a file, not a folder")
    return folder


def ensure_available(name, data_dir=None):
    """Returns the data folder; raises DataUnavailableError fast when offline with no data.
    ValueError naming --dataset if `name` is unknown or has no TFDS splits of its own."""
    spec = datasets.get(name)
    if spec.tfds_name is None:
        raise ValueError(f"--dataset={name} is not a TFDS dataset (its images are made from "
                         f"{spec.stacked_from or 'its loader'}'s)")
    folder = data_folder(data_dir)
    if (not _tfds().builder(spec.tfds_name, data_dir=folder).is_prepared()
            and not network_reachable()):
        raise DataUnavailableError(missing_data_message(name, folder))
    return folder


def check_prepared(name, data_dir=None):
    """Raises DataUnavailableError (as ensure_available would, later) if the TFDS splits the
    dataset `name` is read from (its source's: gan.datasets) are not prepared in the data
    folder and cannot be downloaded; cheap where they are prepared (a glob, no TFDS import),
    so a run can check before it writes anything. A dataset with a loader reads no TFDS
    folder."""
    spec = datasets.get(datasets.get(name).source)
    if spec.loader is not None:
        return
    name = spec.tfds_name
    folder = data_folder(data_dir)
    if glob.glob(os.path.join(glob.escape(folder), name, "*", "dataset_info.json")):
        return
    if not network_reachable():
        raise DataUnavailableError(missing_data_message(name, folder))


def load_split(name="mnist", split="train", data_dir=None):
    """Loads a whole split into memory: (images uint8 [N, H, W], labels int32 [N]; H, W: the
    Dataset's image_shape, 28x28).

    A dataset with a loader (gan.datasets) is read by it. Others go through `tfds.load`
    (downloading if needed and possible); the 47 MB of MNIST then stay in memory so the
    training stream never touches disk or Python per step.
    The decoded arrays are also cached as .npz (see `cache_path`), so later runs skip the
    PNG decoding and TFDS's import. Cached per process too:
    the arrays returned are read-only and shared.
    """
    return _load_split_cached(name, split, resolve_data_dir(data_dir))


@functools.lru_cache(maxsize=4)
def _load_split_cached(name, split, data_dir):
    spec = datasets.get(name)
    if spec.loader is not None:
        images, labels = (np.array(a) for a in spec.loader(split, data_dir))
        images.flags.writeable = labels.flags.writeable = False
        return images, labels
    if spec.tfds_name is None:
        ensure_available(name, data_dir)  # raises the ValueError naming --dataset
    cache = cache_path(spec.tfds_name, split, data_dir)
    if cache and os.path.exists(cache):
        with np.load(cache) as f:
            images, labels = f["images"], f["labels"]
    else:
        folder = ensure_available(name, data_dir)
        ds = _tfds().load(spec.tfds_name, split=split, data_dir=folder)
        ds = ds.map(lambda ex: (ex["image"][..., 0], tf.cast(ex["label"], tf.int32)))
        images, labels = ds.batch(1 << 20).get_single_element()
        images, labels = images.numpy(), labels.numpy()
        if cache:
            write_cached_arrays(cache, images=images, labels=labels)
    images.flags.writeable = labels.flags.writeable = False
    return images, labels


def cache_path(name, split, data_dir):
    """Path of the decoded-array cache of a prepared split, or None if it is not prepared.

    The name includes a fingerprint of the prepared files (path, size, mtime), so a
    re-prepared dataset is never served stale. Folder: $GAN_CACHE_DIR, else ~/.cache/gan.
    """
    infos = sorted(glob.glob(os.path.join(data_dir, name, "*", "dataset_info.json")))
    if not infos:
        return None
    shards = sorted(glob.glob(os.path.join(os.path.dirname(infos[-1]), f"*-{split}.*")))
    if not shards:
        return None
    stats = [(p, os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in [infos[-1], *shards]]
    digest = hashlib.sha256(repr(stats).encode()).hexdigest()[:16]
    return os.path.join(cache_dir(), f"{name}-{split}-{digest}.npz")


def index_stream(num_examples, seed, start_position=0, size=1):
    """Dataset of int32 example indices [size]: positions start_position + i*size ... of the
    per-epoch stateless shuffles of range(num_examples), laid end to end."""
    start_epoch, offset = divmod(int(start_position), num_examples)
    seed = tf.constant(seed, tf.int64)

    def epoch_permutation(epoch):
        return tf.random.experimental.stateless_shuffle(
            tf.range(num_examples, dtype=tf.int32), seed=tf.stack([seed, epoch])
        )

    # The first epoch from `offset` on, gathered into a tensor of its own: rebatch pieces
    # of a slice (a view) make TensorFlow log "Tensor RefCount not reliable" errors.
    first = tf.data.Dataset.from_tensors(tf.constant(start_epoch, tf.int64)).map(
        lambda epoch: tf.gather(epoch_permutation(epoch), tf.range(offset, num_examples)))
    rest = tf.data.Dataset.counter(start_epoch + 1).map(epoch_permutation)
    # rebatch cuts the permutations into pieces of `size` by slices: unbatching them into
    # single indices and batching those again costs several times the CPU, which the
    # training loop shares.
    return first.concatenate(rest).rebatch(size, drop_remainder=True)


def make_batches(images, labels, batch_size, seed, start_step=0, steps_per_element=1):
    """The training stream, resumable at any step.

    Yields (images float32 [K, B, 28, 28] in [0, 1], labels int32 [K, B]) with
    K = steps_per_element, B = batch_size; element i holds the batches of steps
    start_step + i*K ... start_step + (i+1)*K - 1. images (uint8 [N, 28, 28]) and labels
    ([N]) are arrays, copied into tensors, or tensors, used as they are.
    """
    images = tf.constant(images)
    labels = tf.constant(labels)

    def gather(idx):
        # One gather per element of K steps [K, B], not one per step: half the CPU, which
        # the training loop shares.
        idx = tf.reshape(idx, [steps_per_element, batch_size])
        return tf.cast(tf.gather(images, idx), tf.float32) / 255.0, tf.gather(labels, idx)

    ds = index_stream(len(labels), seed, start_step * batch_size,
                      steps_per_element * batch_size)
    return ds.map(gather).prefetch(tf.data.AUTOTUNE)


def cluster_labels(images, num_clusters=10, seed=0, iterations=30):
    """Pseudo-labels without using any label: k-means (Lloyd's algorithm) on the pixels of
    images uint8 [N, 28, 28] (scaled to [0, 1]), started by k-means++ (each next starting
    centre an image drawn with probability proportional to its squared distance to the
    nearest centre so far; draws seeded by `seed`). Returns int32 [N] cluster ids in
    0..num_clusters-1, each image's nearest final centre. A pure function of its arguments
    on one machine, so a resumed run recomputes the same ids. For self-conditioned training
    (--clusters): the GAN is conditioned on these clusters of look-alike digits, not on the
    digits' labels.
    """
    x = images.reshape(len(images), -1).astype(np.float32) / 255.0  # [N, 784]
    squared = (x * x).sum(axis=1, keepdims=True)  # [N, 1]

    def distances(centres):  # squared Euclidean, [N, K]
        return np.maximum(squared - 2.0 * x @ centres.T + (centres * centres).sum(axis=1), 0.0)

    def nearest(centres):
        return distances(centres).argmin(axis=1)

    rng = np.random.default_rng(seed)
    centres = x[[rng.integers(len(x))]]  # [1, 784], then grown to [K, 784]
    while len(centres) < num_clusters:
        to_nearest = distances(centres).min(axis=1).astype(np.float64)
        pick = rng.choice(len(x), p=to_nearest / to_nearest.sum())
        centres = np.concatenate([centres, x[[pick]]])

    for _ in range(iterations):
        ids = nearest(centres)
        # An emptied cluster keeps its centre (it cannot happen from distinct data points
        # in the first pass, but can later).
        centres = np.stack([x[ids == k].mean(axis=0) if (ids == k).any() else centres[k]
                            for k in range(num_clusters)])
    return nearest(centres).astype(np.int32)
