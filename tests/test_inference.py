"""gan.models.inference: seeded noise (plain and truncated) and uint8 conversion."""

import math

import numpy as np
import pytest
import tensorflow as tf

from gan.models import inference


def truncated_normal_std(t):
    """Standard deviation of N(0, 1) truncated to [-t, t] (textbook formula)."""
    pdf = math.exp(-t * t / 2) / math.sqrt(2 * math.pi)
    mass = math.erf(t / math.sqrt(2))  # P(|z| <= t)
    return math.sqrt(1 - 2 * t * pdf / mass)


def test_plain_noise_is_the_stateless_normal_of_the_seed():
    noise = inference.sample_noise(5, 7, 3)
    expected = tf.random.stateless_normal([5, 7], seed=[3, 0])
    assert np.array_equal(noise.numpy(), expected.numpy())
    assert np.array_equal(noise.numpy(), inference.sample_noise(5, 7, 3, truncation=0).numpy())


@pytest.mark.parametrize("t", [0.5, 1.0, 2.0])
def test_truncated_noise_stays_within_the_bound_and_has_the_truncated_normals_spread(t):
    noise = inference.sample_noise(2000, 100, 1, truncation=t).numpy()  # 200,000 numbers
    assert noise.dtype == np.float32 and noise.shape == (2000, 100)
    assert np.abs(noise).max() <= t
    assert abs(noise.mean()) < 0.01
    # e.g. t=1: std 0.5396 (vs 1 untruncated); the standard error here is ~0.001
    assert noise.std() == pytest.approx(truncated_normal_std(t), abs=0.005)
    if t >= 1:  # a uniform on [-t, t] has the same bound but std t / sqrt(3), far from it
        assert abs(noise.std() - t / math.sqrt(3)) > 0.02


def test_truncated_noise_is_a_pure_function_of_the_seed():
    a = inference.sample_noise(4, 10, 5, truncation=1.5).numpy()
    assert np.array_equal(a, inference.sample_noise(4, 10, 5, truncation=1.5).numpy())
    assert not np.allclose(a, inference.sample_noise(4, 10, 6, truncation=1.5).numpy())


def test_a_large_truncation_is_finite():
    noise = inference.sample_noise(1000, 100, 0, truncation=40.0).numpy()
    assert np.isfinite(noise).all()


@pytest.mark.parametrize("t", [-0.5, float("nan")])
def test_a_negative_or_nan_truncation_is_refused(t):
    with pytest.raises(ValueError, match="truncation must be >= 0"):
        inference.sample_noise(3, 4, 0, truncation=t)


def test_to_uint8_rounds_and_clips():
    pixels = inference.to_uint8(tf.constant([-0.5, 0.0, 0.5, 1.0, 2.0, 1 / 255 * 0.6]))
    assert pixels.numpy().tolist() == [0, 0, 128, 255, 255, 1]


def test_sampling_labels_by_kind_of_generator():
    assert inference.sampling_labels({"conditional": False}, 5) is None
    assert inference.sampling_labels({"conditional": True}, 12).tolist() == [
        0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    clustered = {"conditional": True, "clusters": 3, "cluster_prior": [0.2, 0.0, 0.8]}
    drawn = inference.sampling_labels(clustered, 1000, seed=1)
    assert drawn.dtype == np.int32 and np.bincount(drawn).tolist() == [200, 0, 800]
    assert np.array_equal(drawn, inference.sampling_labels(clustered, 1000, seed=1))
    assert not np.array_equal(drawn, inference.sampling_labels(clustered, 1000, seed=2))
    # shares that do not divide evenly: the largest remainders get the extra samples
    thirds = {"conditional": True, "clusters": 3, "cluster_prior": [0.5, 0.3, 0.2]}
    assert np.bincount(inference.sampling_labels(thirds, 7), minlength=3).tolist() == [4, 2, 1]
    assert len(inference.sampling_labels(thirds, 1)) == 1


def test_cluster_labels_of_stacked_channels_are_drawn_channel_by_channel():
    # Stacked MNIST with --clusters=K: a label is one cluster id per channel (ka K^2 + kb K
    # + kc), the prior the product of one channel's shares. With more tuples (K^3 = 64,000)
    # than samples, every channel must still get each cluster's share of the samples, not
    # only the likeliest tuples' clusters.
    k, num = 40, 2000
    shares = np.arange(1, k + 1, dtype=np.float64)
    shares /= shares.sum()
    prior = np.multiply.outer(np.multiply.outer(shares, shares), shares).reshape(-1)
    architecture = {"conditional": True, "dataset": "stacked_mnist", "clusters": k,
                    "cluster_prior": prior.tolist()}
    labels = inference.sampling_labels(architecture, num, seed=3)
    assert labels.shape == (num,) and labels.dtype == np.int32
    channels = [labels // k ** 2, labels // k % k, labels % k]
    for ids in channels:
        counts = np.bincount(ids, minlength=k)
        assert counts.sum() == num
        assert np.all(np.abs(counts - shares * num) < 1), counts  # its share, rounded
    # The channels are shuffled apart: independent, not one order repeated.
    assert not np.array_equal(channels[0], channels[1])
    assert abs(np.corrcoef(channels[0], channels[2])[0, 1]) < 0.1
    assert np.array_equal(labels, inference.sampling_labels(architecture, num, seed=3))
