"""Sample-quality metrics on classifier features and predictions: pure numpy.

Shapes: features [N, D] (the classifier's penultimate layer), probabilities [N, C] (its
softmax). "Real" is the reference set (the MNIST test split), "fake" the set judged.
"""

import numpy as np


def mean_and_covariance(features):
    """(mean [D], covariance [D, D]) of features [N, D], float64, covariance with N - 1."""
    features = np.asarray(features, np.float64)
    return features.mean(axis=0), np.cov(features, rowvar=False)


def _psd_sqrt(matrix):
    """The symmetric square root of a symmetric positive semi-definite matrix [D, D]."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(mean1, cov1, mean2, cov2):
    """Fréchet distance between N(mean1, cov1) and N(mean2, cov2) (FID's formula):

        |mean1 - mean2|^2 + tr(cov1 + cov2 - 2 (cov1 cov2)^(1/2)).

    tr((cov1 cov2)^(1/2)) is computed as tr((s cov2 s)^(1/2)) with s = cov1^(1/2): the same
    eigenvalues, but of a symmetric PSD matrix, so eigh gives it stably without the complex
    round-off scipy.linalg.sqrtm produces on near-singular covariances.
    """
    s = _psd_sqrt(np.asarray(cov1, np.float64))
    middle = s @ np.asarray(cov2, np.float64) @ s
    trace_sqrt = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)))
    diff = np.asarray(mean1, np.float64) - np.asarray(mean2, np.float64)
    return float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2 * trace_sqrt)


def frechet_distance_of(features1, features2):
    """frechet_distance of the Gaussians fitted to features1 [N, D] and features2 [M, D]."""
    return frechet_distance(*mean_and_covariance(features1), *mean_and_covariance(features2))


def polynomial_kernel(x, y):
    """KID's kernel (x.y / D + 1)^3 of x [N, D] and y [M, D]: [N, M]."""
    k = x @ y.T
    k /= x.shape[1]
    k += 1.0
    return k * k * k  # 3x faster than ** 3, which goes through pow()


def mmd2_unbiased(x, y):
    """Unbiased estimate of MMD^2 between the distributions of x [N, D] and y [M, D] under
    polynomial_kernel (diagonal terms left out, so it can be slightly negative)."""
    n, m = len(x), len(y)
    kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    return float((kxx.sum() - np.trace(kxx)) / (n * (n - 1))
                 + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
                 - 2 * kxy.mean())


def kernel_distance(real, fake, num_subsets=100, subset_size=1000, seed=0):
    """KID: mmd2_unbiased averaged over `num_subsets` random subsets of
    min(subset_size, N, M) rows of each of real [N, D] and fake [M, D]. Returns
    (mean, standard deviation over subsets)."""
    rng = np.random.default_rng(seed)
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    size = min(subset_size, len(real), len(fake))
    estimates = [mmd2_unbiased(real[rng.choice(len(real), size, replace=False)],
                               fake[rng.choice(len(fake), size, replace=False)])
                 for _ in range(num_subsets)]
    return float(np.mean(estimates)), float(np.std(estimates))


def classifier_score(probs, eps=1e-12):
    """Inception-score style exp(E_x KL(p(y|x) || p(y))) of probabilities [N, C]: 1 when
    every sample gets the same prediction, C when predictions are confident and balanced."""
    probs = np.asarray(probs, np.float64)
    marginal = probs.mean(axis=0)
    kl = np.sum(probs * (np.log(probs + eps) - np.log(marginal + eps)), axis=1)
    return float(np.exp(kl.mean()))


def class_histogram(probs):
    """Fraction of samples whose most probable class is c, for each class: [C], sums to 1."""
    probs = np.asarray(probs)
    counts = np.bincount(np.argmax(probs, axis=1), minlength=probs.shape[1])
    return counts / counts.sum()


def modes_covered(histogram, threshold=0.02):
    """How many classes make up at least `threshold` of the samples."""
    return int(np.sum(np.asarray(histogram) >= threshold))


def kl_from_uniform(histogram):
    """KL(histogram || uniform) in nats: 0 for a perfectly balanced class mix, log(C) when
    every sample is one class."""
    p = np.asarray(histogram, np.float64)
    nonzero = p > 0
    return float(np.sum(p[nonzero] * np.log(p[nonzero] * len(p))))


def _pairwise_distances(x, y):
    """Euclidean distances [N, M] between rows of x [N, D] and y [M, D]."""
    sq = np.sum(x * x, axis=1)[:, None] + np.sum(y * y, axis=1)[None, :] - 2 * x @ y.T
    return np.sqrt(np.clip(sq, 0, None))


def knn_radii(features, k=3, chunk=1000):
    """Distance from each row of features [N, D] to its k-th nearest other row: [N]."""
    features = np.asarray(features, np.float64)
    radii = []
    for start in range(0, len(features), chunk):
        d = _pairwise_distances(features[start:start + chunk], features)
        radii.append(np.partition(d, k, axis=1)[:, k])  # column 0 of the sort is the row itself
    return np.concatenate(radii)


def precision_recall(real, fake, k=3, real_radii=None, chunk=1000):
    """Improved precision and recall (Kynkäänniemi et al. 2019) of fake [M, D] against
    real [N, D]: each set's manifold is the union of balls around its points reaching their
    k-th nearest neighbour. Precision: fraction of fake points inside the real manifold
    (are samples realistic?); recall: fraction of real points inside the fake manifold
    (is the variety covered?). `real_radii` (knn_radii(real, k)) may be passed to reuse it.
    """
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    if real_radii is None:
        real_radii = knn_radii(real, k, chunk)
    fake_radii = knn_radii(fake, k, chunk)
    fake_inside = np.zeros(len(fake), bool)
    real_inside = np.zeros(len(real), bool)
    for start in range(0, len(fake), chunk):
        d = _pairwise_distances(fake[start:start + chunk], real)  # [chunk, N]
        fake_inside[start:start + chunk] = np.any(d <= real_radii[None, :], axis=1)
        real_inside |= np.any(d <= fake_radii[start:start + chunk, None], axis=0)
    return float(fake_inside.mean()), float(real_inside.mean())
