import os
import subprocess
import sys
import time

import numpy as np
import tensorflow as tf
import pytest

from gan import files
from gan.datasets import load as data
from gan.datasets import idx as idx_lib


def test_load_split_real_mnist_shapes_dtype_and_known_facts(real_mnist_dir):
    images, labels = data.load_split("mnist", "train", real_mnist_dir)
    assert images.shape == (60000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (60000,)
    assert np.bincount(labels).tolist() == [5923, 6742, 5958, 6131, 5842,
                                            5421, 5918, 6265, 5851, 5949]
    assert abs(images.mean() / 255 - 0.1307) < 1e-3


def sorted_rows(images, labels):
    """The (image, label) pairs as rows [N, 785], sorted: the data as a multiset, whatever
    order TFDS wrote the examples in."""
    rows = np.concatenate([images.reshape(len(images), -1), labels[:, None]], axis=1)
    return rows[np.lexsort(rows.T[::-1])]


@pytest.mark.parametrize("split", ["train", "test"])
def test_load_split_gives_every_prepared_example_and_nothing_else(data_dir, mock_splits, split):
    images, labels = data.load_split("mnist", split, data_dir)
    written_images, written_labels = mock_splits[split]
    assert images.shape == written_images.shape and images.dtype == np.uint8
    assert labels.shape == written_labels.shape and labels.dtype == np.int32
    assert not images.flags.writeable and not labels.flags.writeable  # shared per process
    np.testing.assert_array_equal(sorted_rows(images, labels),
                                  sorted_rows(written_images, written_labels.astype(np.int32)))


def test_batches_shapes_dtype_range(mnist_train):
    images, labels = mnist_train
    x, y = next(iter(data.make_batches(images, labels, 32, seed=0, steps_per_element=4)))
    assert x.shape == (4, 32, 28, 28) and x.dtype.name == "float32"
    assert y.shape == (4, 32)
    assert 0.0 <= float(np.min(x)) and float(np.max(x)) <= 1.0
    assert float(np.max(x)) == 1.0  # pixels divided by 255, as the original


def test_stream_is_a_function_of_seed_and_position():
    images = np.arange(50, dtype=np.uint8).reshape(50, 1, 1).repeat(28, 1).repeat(28, 2)
    labels = np.arange(50, dtype=np.int32)

    def labels_of(seed, start_step, n):
        ds = data.make_batches(images, labels, 8, seed, start_step, steps_per_element=1)
        return np.concatenate([y.numpy()[0] for _, y in ds.take(n)])

    full = labels_of(0, 0, 20)
    assert np.array_equal(labels_of(0, 7, 13), full[7 * 8:])   # resume mid-epoch
    assert not np.array_equal(labels_of(1, 0, 20), full)       # seed matters
    assert sorted(full[:50]) == list(range(50))                # epoch 0 is a permutation
    assert sorted(full[50:100]) == list(range(50))             # and so is epoch 1
    assert not np.array_equal(full[:50], full[50:100])         # reshuffled each epoch


def test_stream_is_the_epochs_stateless_shuffles_one_after_another():
    """Element i of make_batches(..., B, seed, start, K) holds positions (start + iK) B ... of
    the per-epoch permutations stateless_shuffle(range(N), seed=[seed, epoch]) laid end to
    end: the definition that checkpoints of every version resume on. Elements may span
    epochs, or be longer than one."""
    n, seed = 50, 5
    images = np.zeros((n, 28, 28), np.uint8)
    labels = np.arange(n, dtype=np.int32)  # label = index
    order = np.concatenate([tf.random.experimental.stateless_shuffle(
        tf.range(n, dtype=tf.int32), seed=[seed, epoch]).numpy() for epoch in range(12)])
    for start_step, k, b in [(0, 4, 8), (7, 3, 8), (13, 5, 7), (2, 10, 8)]:
        ds = data.make_batches(images, labels, b, seed, start_step, steps_per_element=k)
        got = np.concatenate([y.numpy().reshape(-1) for _, y in ds.take(6)])
        assert len(got) == 6 * k * b
        np.testing.assert_array_equal(got, order[start_step * b:start_step * b + len(got)],
                                      err_msg=f"start {start_step}, K {k}, B {b}")


def test_stream_across_epochs_from_mid_epoch_logs_no_tensorflow_errors():
    """Resuming mid-epoch and crossing into the next epoch must not make TensorFlow log
    errors (rebatch pieces of a permutation sliced at an aligned offset did: "Tensor
    RefCount not reliable")."""
    # 20,000 examples: smaller ones never showed it
    code = ("from gan.datasets import load as data\n"
            "print(sum(int(x.numpy().size) for x in data.index_stream(20000, 0, 32, 3200)"
            ".take(8)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["25600"]
    assert "RefCount" not in result.stderr and " tensor.h" not in result.stderr


def test_every_batch_image_is_its_stream_index_image_with_its_label(mnist_train):
    """Both elements of make_batches(..., 16, seed=3, start_step=11, K=2): all 64 images and
    labels are those of the stream's indices, positions 176... of the epochs' permutations
    (test_stream_is_the_epochs_stateless_shuffles_one_after_another), pixels / 255."""
    images, labels = mnist_train
    n = len(labels)
    order = np.concatenate([tf.random.experimental.stateless_shuffle(
        tf.range(n, dtype=tf.int32), seed=[3, epoch]).numpy() for epoch in range(2)])
    stream = data.make_batches(images, labels, 16, seed=3, start_step=11, steps_per_element=2)
    got = [(x.numpy(), y.numpy()) for x, y in stream.take(2)]
    x = np.concatenate([x for x, _ in got]).reshape(64, 28, 28)
    y = np.concatenate([y for _, y in got]).reshape(64)
    idx = order[11 * 16:11 * 16 + 64]
    np.testing.assert_array_equal(y, labels[idx])
    np.testing.assert_array_equal(x, images[idx].astype(np.float32) / 255.0)
    assert len(set(idx.tolist())) == 64 and len({image.tobytes() for image in x}) == 64


def test_missing_data_offline_fails_fast_with_both_remedies(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "network_reachable", lambda *a, **k: False)
    start = time.time()
    with pytest.raises(data.DataUnavailableError) as err:
        data.load_split("mnist", "train", str(tmp_path))
    assert time.time() - start < 10
    message = str(err.value)
    assert str(tmp_path) in message
    assert "--prepare_from" in message and "TFDS_DATA_DIR" in message


def test_resolve_data_dir_honours_env(monkeypatch, tmp_path):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    assert files.resolve_data_dir(None) == str(tmp_path)
    assert files.resolve_data_dir("/x/y") == "/x/y"


def test_unknown_dataset_is_rejected():
    with pytest.raises(ValueError, match="--dataset must be one of mnist, .*got 'cifar'"):
        data.ensure_available("cifar", "/nonexistent")


def test_read_idx_rejects_bad_files(tmp_path):
    bad = tmp_path / "bad"
    bad.write_bytes(b"hello world")
    with pytest.raises(ValueError, match="magic"):
        idx_lib.read_idx(str(bad))
    short = tmp_path / "short"
    short.write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x10" + b"\x01" * 3)
    with pytest.raises(ValueError, match="truncated"):
        idx_lib.read_idx(str(short))
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        idx_lib.read_idx_split(str(tmp_path), "train")


@pytest.mark.slow
def test_real_mnist_idx_files_hold_the_known_splits_and_the_prepared_tfds_copy(
        real_mnist_idx_dir, real_mnist_dir):
    """The real IDX files read as MNIST's known splits, and their test split is image for
    image the prepared TFDS copy's. (Preparing a TFDS folder from IDX files with TFDS's own
    builder runs for every session on the generated data: the data_dir fixture.)"""
    train_images, train_labels = idx_lib.read_idx_split(real_mnist_idx_dir, "train")
    assert train_images.shape == (60000, 28, 28) and train_images.dtype == np.uint8
    assert np.bincount(train_labels).tolist() == [5923, 6742, 5958, 6131, 5842,
                                                  5421, 5918, 6265, 5851, 5949]
    test_images, test_labels = idx_lib.read_idx_split(real_mnist_idx_dir, "test")
    tfds_images, tfds_labels = data.load_split("mnist", "test", real_mnist_dir)
    assert test_images.shape == tfds_images.shape == (10000, 28, 28)
    # TFDS's builder keeps the IDX order of neither split: compare as sets of (image, label).
    def rows(images, labels):
        return sorted(image.tobytes() + bytes([label]) for image, label in zip(images, labels))
    assert rows(test_images, test_labels) == rows(tfds_images, tfds_labels)


def test_decoded_split_is_cached_and_keyed_by_the_files(tmp_path, monkeypatch, data_dir):
    monkeypatch.setenv("GAN_CACHE_DIR", str(tmp_path / "cache"))
    path = data.cache_path("mnist", "test", data_dir)
    assert path.startswith(str(tmp_path / "cache"))
    data._load_split_cached.cache_clear()
    images, labels = data.load_split("mnist", "test", data_dir)
    assert os.path.exists(path)
    data._load_split_cached.cache_clear()
    monkeypatch.setattr(data, "_tfds", lambda: pytest.fail("cache hit must not touch TFDS"))
    cached_images, cached_labels = data.load_split("mnist", "test", data_dir)
    assert np.array_equal(images, cached_images) and np.array_equal(labels, cached_labels)
    assert data.cache_path("mnist", "test", str(tmp_path / "elsewhere")) is None


def blobs(seed=0):
    """Three well-separated kinds of 'image' (all dark, left half lit, right half lit), 20
    noisy copies each, in shuffled order: images uint8 [60, 28, 28] and their kind [60]."""
    rng = np.random.default_rng(seed)
    kinds = rng.permutation(np.repeat(np.arange(3), 20))
    images = rng.integers(0, 30, (60, 28, 28))
    images[kinds == 1, :, :14] += 200
    images[kinds == 2, :, 14:] += 200
    return images.astype(np.uint8), kinds


def test_cluster_labels_recover_well_separated_groups():
    images, kinds = blobs()
    ids = data.cluster_labels(images, num_clusters=3, seed=1)
    assert ids.dtype == np.int32 and ids.shape == (60,)
    # the same partition, whatever the ids are called
    pairs = {(k, c) for k, c in zip(kinds, ids)}
    assert len(pairs) == 3 and len({c for _, c in pairs}) == 3


def test_cluster_labels_are_a_function_of_the_seed_and_nearest_centres():
    images, _ = blobs(seed=2)
    a = data.cluster_labels(images, num_clusters=4, seed=5)
    assert np.array_equal(a, data.cluster_labels(images, num_clusters=4, seed=5))
    # every image is closer to its own cluster's mean than to any other cluster's
    x = images.reshape(60, -1).astype(np.float64) / 255
    centres = np.stack([x[a == k].mean(axis=0) for k in np.unique(a)])
    nearest = ((x[:, None] - centres[None]) ** 2).sum(axis=2).argmin(axis=1)
    assert np.array_equal(np.unique(a)[nearest], a)
