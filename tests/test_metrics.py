"""Known answers for the metric functions (pure numpy, no data needed)."""

import numpy as np
import pytest

from gan.evaluation import metrics


def random_covariance(rng, dim):
    a = rng.normal(size=(dim, dim))
    return a @ a.T / dim + 0.1 * np.eye(dim)


def test_frechet_distance_of_identical_sets_is_zero():
    features = np.random.default_rng(0).normal(size=(500, 16))
    assert abs(metrics.frechet_distance_of(features, features)) < 1e-8


def test_frechet_distance_closed_form_diagonal_gaussians():
    mean1, mean2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, -1.0, 2.0])
    var1, var2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expected = np.sum((mean1 - mean2) ** 2) + np.sum(var1 + var2 - 2 * np.sqrt(var1 * var2))
    got = metrics.frechet_distance(mean1, np.diag(var1), mean2, np.diag(var2))
    assert got == pytest.approx(expected, rel=1e-10)  # 5 + (4 + 1 + 0) = 10


def test_frechet_distance_closed_form_scaled_full_covariance():
    # cov2 = c * cov1 (not diagonal): tr(cov1 + c cov1 - 2 sqrt(c) cov1) = (1 - sqrt c)^2 tr cov1
    rng = np.random.default_rng(1)
    cov = random_covariance(rng, 8)
    mean1, mean2 = rng.normal(size=8), rng.normal(size=8)
    expected = np.sum((mean1 - mean2) ** 2) + (1 - 2.0) ** 2 * np.trace(cov)
    assert metrics.frechet_distance(mean1, cov, mean2, 4.0 * cov) == pytest.approx(expected)


def test_frechet_distance_non_commuting_covariances_match_the_eigenvalue_form():
    rng = np.random.default_rng(2)
    cov1, cov2 = random_covariance(rng, 6), random_covariance(rng, 6)
    assert not np.allclose(cov1 @ cov2, cov2 @ cov1)
    mean1, mean2 = rng.normal(size=6), rng.normal(size=6)
    # tr sqrtm(cov1 cov2) is the sum of the square roots of the eigenvalues of cov1 cov2
    # (real and positive: the product is similar to cov1^1/2 cov2 cov1^1/2), computed here
    # from the unsymmetric product, not the symmetric form the code uses.
    eigenvalues = np.linalg.eigvals(cov1 @ cov2)
    assert np.abs(eigenvalues.imag).max() < 1e-9 and eigenvalues.real.min() > 0
    trace_cross = np.sum(np.sqrt(eigenvalues.real))
    expected = np.sum((mean1 - mean2) ** 2) + np.trace(cov1 + cov2) - 2 * trace_cross
    assert metrics.frechet_distance(mean1, cov1, mean2, cov2) == pytest.approx(expected)
    assert metrics.frechet_distance(mean2, cov2, mean1, cov1) == pytest.approx(expected)


def test_frechet_distance_of_samples_approaches_the_closed_form():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200000, 2))
    y = rng.normal(size=(200000, 2)) * 2.0 + np.array([3.0, 0.0])
    # |(3, 0)|^2 + 2 * (1 + 4 - 2 * 2) = 9 + 2 = 11
    assert metrics.frechet_distance_of(x, y) == pytest.approx(11.0, rel=0.02)


def test_kernel_distance_near_zero_for_the_same_distribution_and_positive_otherwise():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(2000, 16)), rng.normal(size=(2000, 16))
    shifted = rng.normal(size=(2000, 16)) + 0.5
    same, _ = metrics.kernel_distance(a, b, num_subsets=20, subset_size=500)
    different, _ = metrics.kernel_distance(a, shifted, num_subsets=20, subset_size=500)
    assert different > 0.1
    assert abs(same) < 0.01 * different


def test_mmd2_unbiased_is_unbiased_where_the_biased_estimate_is_not():
    # Averaged over many small pairs from one distribution, the unbiased estimate is ~0,
    # while the plug-in (biased) one, which keeps the diagonal, stays clearly positive.
    rng = np.random.default_rng(5)
    unbiased, biased = [], []
    for _ in range(300):
        x, y = rng.normal(size=(20, 4)), rng.normal(size=(20, 4))
        unbiased.append(metrics.mmd2_unbiased(x, y))
        k = metrics.polynomial_kernel
        biased.append(k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean())
    assert abs(np.mean(unbiased)) < 0.2 * np.mean(biased)


def test_classifier_score_known_values():
    confident_balanced = np.eye(10)[np.arange(1000) % 10]
    assert metrics.classifier_score(confident_balanced) == pytest.approx(10.0, rel=1e-6)
    one_class = np.eye(10)[np.zeros(1000, int)]
    assert metrics.classifier_score(one_class) == pytest.approx(1.0)
    unsure = np.full((1000, 10), 0.1)
    assert metrics.classifier_score(unsure) == pytest.approx(1.0)
    two_classes = np.eye(10)[np.arange(1000) % 2]
    assert metrics.classifier_score(two_classes) == pytest.approx(2.0, rel=1e-6)


def test_class_histogram_modes_and_kl():
    probs = np.eye(10)[np.array([1] * 90 + [7] * 9 + [3] * 1)]
    hist = metrics.class_histogram(probs)
    assert hist[1] == pytest.approx(0.9) and hist[7] == pytest.approx(0.09)
    assert hist.sum() == pytest.approx(1.0)
    assert metrics.modes_covered(hist) == 2  # 3 holds 1%, below the 2% threshold
    assert metrics.kl_from_uniform(np.full(10, 0.1)) == pytest.approx(0.0, abs=1e-12)
    assert metrics.kl_from_uniform(np.eye(10)[4]) == pytest.approx(np.log(10))


def test_knn_radii_skip_the_point_itself():
    points = np.array([[0.0], [1.0], [3.0], [6.0], [10.0]])
    # neighbours of 0: 1, 3, 6 -> the third is at distance 6
    assert metrics.knn_radii(points, k=3) == pytest.approx([6.0, 5.0, 3.0, 5.0, 9.0])


def test_precision_recall_identical_disjoint_and_collapsed():
    rng = np.random.default_rng(6)
    real = rng.normal(size=(600, 8))
    assert metrics.precision_recall(real, real.copy()) == pytest.approx((1.0, 1.0))
    far = rng.normal(size=(600, 8)) + 100.0
    assert metrics.precision_recall(real, far) == (0.0, 0.0)
    collapsed = np.repeat(real[:1], 600, axis=0)  # every sample the same realistic point
    precision, recall = metrics.precision_recall(real, collapsed, chunk=128)
    assert precision == 1.0
    assert recall < 0.01
