"""Evaluation of generated digits against the MNIST test split, in the classifier's features.

`evaluate_images(images)` gives every metric of gan.metrics for images [N, 28, 28] in [0, 1];
`real_floor(n)` gives the same for n real training digits: what a perfect generator would
reach with n samples (the metrics are biased by sample size, so compare at equal n). Also:
loading images from a .npy or a PNG folder, restoring a generator from a checkpoint, the
printed table, and the one-line summary that training logs.
"""

import dataclasses
import functools
import glob
import os

import numpy as np

from gan import classifier, data, metrics

DEFAULT_NUM_SAMPLES = 10000
K_NEAREST = 3
MIN_IMAGES = 10  # fewer cannot fill a 3-NN manifold or a covariance meaningfully
FLOOR_SEED = 0  # which training digits make the floor; fixed so floors are comparable

# name in the results -> (label in the table, format)
ROWS = {
    "fd": ("Fréchet distance (lower is better)", "{:.3f}"),
    "kid": ("kernel distance KID (lower)", "{:.5f}"),
    "classifier_score": ("classifier score (max 10)", "{:.3f}"),
    "modes_covered": ("digits >= 2% of samples (of 10)", "{}"),
    "class_kl": ("class-mix KL from uniform (lower)", "{:.4f}"),
    "precision": ("precision, k=3 (realism)", "{:.3f}"),
    "recall": ("recall, k=3 (variety)", "{:.3f}"),
}


@dataclasses.dataclass(frozen=True)
class Reference:
    """The MNIST test split in classifier space: features [N, 64], their mean and covariance,
    and each point's distance to its K_NEAREST-th neighbour (the real manifold)."""

    features: np.ndarray
    mean: np.ndarray
    cov: np.ndarray
    radii: np.ndarray


@functools.lru_cache(maxsize=2)
def _reference(data_dir):
    images, _ = data.load_split("mnist", "test", data_dir)
    features, _ = classifier.features_and_probs(images / 255.0)
    return Reference(features, *metrics.mean_and_covariance(features),
                     metrics.knn_radii(features, K_NEAREST))


def reference(data_dir=None):
    """The test-split Reference, computed once per process and data folder."""
    return _reference(data.resolve_data_dir(data_dir))


def check_images(images, source="images"):
    """images as float32 [N, 28, 28] in [0, 1]; accepts uint8 (0-255), float in [0, 1], and
    a trailing channel of 1. Raises ValueError naming `source` for anything else."""
    images = np.asarray(images)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(
            f"{source}: expected images of shape [N, 28, 28], got {list(images.shape)}")
    if len(images) < MIN_IMAGES:
        raise ValueError(f"{source}: need at least {MIN_IMAGES} images, got {len(images)}")
    if images.dtype == np.uint8:
        return images.astype(np.float32) / 255.0
    if not np.issubdtype(images.dtype, np.floating):
        raise ValueError(f"{source}: expected uint8 or float pixels, got {images.dtype}")
    if not np.all(np.isfinite(images)) or images.min() < 0 or images.max() > 1:
        raise ValueError(f"{source}: float pixels must be finite and in [0, 1] (got "
                         f"{np.nanmin(images):.3g} .. {np.nanmax(images):.3g}); "
                         "pass 0-255 pixels as uint8")
    return images.astype(np.float32)


def load_images(path):
    """Images from a .npy file ([N, 28, 28], uint8 or float in [0, 1]) or a folder of PNGs
    (28x28 grayscale each, read in name order): float32 [N, 28, 28] in [0, 1]."""
    if os.path.isdir(path):
        files = sorted(glob.glob(os.path.join(path, "*.png")))
        if not files:
            raise ValueError(f"--images={path}: the folder holds no .png files")
        from PIL import Image

        pixels = []
        for file in files:
            with Image.open(file) as im:
                if im.size != (28, 28):
                    raise ValueError(f"--images: {file} is {im.size[0]}x{im.size[1]}, "
                                     "expected 28x28")
                pixels.append(np.asarray(im.convert("L")))
        return check_images(np.stack(pixels), f"--images={path}")
    if not os.path.isfile(path):
        raise ValueError(f"--images={path} does not exist")
    if not path.endswith(".npy"):
        raise ValueError(f"--images={path}: expected a .npy file or a folder of .png files")
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ValueError(f"--images={path} is not a readable .npy array: {e}") from None
    return check_images(array, f"--images={path}")


def metrics_of(features, probs, ref, kid_subsets=100):
    """Every metric of samples with classifier features [N, 64] and probabilities [N, 10]
    against the Reference `ref`: a dict of plain floats/ints (JSON-ready)."""
    mean, cov = metrics.mean_and_covariance(features)
    kid, kid_std = metrics.kernel_distance(ref.features, features, num_subsets=kid_subsets)
    precision, recall = metrics.precision_recall(ref.features, features, K_NEAREST,
                                                 real_radii=ref.radii)
    histogram = metrics.class_histogram(probs)
    return {
        "num_samples": len(features),
        "fd": metrics.frechet_distance(mean, cov, ref.mean, ref.cov),
        "kid": kid,
        "kid_std": kid_std,
        "classifier_score": metrics.classifier_score(probs),
        "modes_covered": metrics.modes_covered(histogram),
        "class_kl": metrics.kl_from_uniform(histogram),
        "precision": precision,
        "recall": recall,
        "class_histogram": [round(float(h), 4) for h in histogram],
    }


def evaluate_images(images, data_dir=None, labels=None):
    """All metrics of images [N, 28, 28] (see check_images) against the MNIST test split.
    With labels (int [N], the digits a class-conditional generator was asked for) also
    "label_accuracy": per digit, the fraction of its samples classified as that digit."""
    images = check_images(images)
    features, probs = classifier.features_and_probs(images)
    result = metrics_of(features, probs, reference(data_dir))
    if labels is not None:
        result["label_accuracy"] = [round(a, 4) for a in label_accuracy(probs, labels)]
    return result


@functools.lru_cache(maxsize=4)
def _real_floor(num_samples, data_dir):
    images, _ = data.load_split("mnist", "train", data_dir)
    chosen = np.random.default_rng(FLOOR_SEED).choice(len(images), num_samples, replace=False)
    return evaluate_images(images[np.sort(chosen)], data_dir)


def real_floor(num_samples=DEFAULT_NUM_SAMPLES, data_dir=None):
    """The metrics of `num_samples` (at most 60,000) random MNIST training digits against the
    test split: the best a generator can expect at that sample size. Cached per process."""
    return _real_floor(min(int(num_samples), data.SPLIT_SIZES["train"]),
                       data.resolve_data_dir(data_dir))


def sample_images(generator, num_samples, seed=0, truncation=0.0, labels=None):
    """num_samples images float32 numpy [N, 28, 28] in [0, 1] from `generator`: the digits
    of `python -m gan.sample --seed=seed --truncation=truncation` (a stateless draw, which
    never touches the training noise generator; truncation: see inference.sample_noise).
    labels int [N]: what a conditional generator is asked for (inference.sampling_labels),
    None for an unconditional one."""
    from gan import inference

    noise = inference.sample_noise(num_samples, generator.inputs[0].shape[-1], seed,
                                   truncation)
    return inference.generate(generator, noise, labels).numpy()


def label_accuracy(probs, labels):
    """For each digit d, the fraction of the samples asked to be d that the classifier
    (probabilities [N, 10]) calls d: a list of 10 floats (NaN where none was asked)."""
    predicted = np.argmax(probs, axis=1)
    labels = np.asarray(labels)
    return [float(np.mean(predicted[labels == d] == d)) if np.any(labels == d) else float("nan")
            for d in range(classifier.NUM_CLASSES)]


def format_table(generated, floor):
    """The readable table: one row per metric, generated beside the real floor, then the
    class mixes in percent."""
    width = max(len(label) for label, _ in ROWS.values())
    head = f"real digits ({floor['num_samples']})"
    lines = [f"{'metric':<{width}}  {'generated':>12}  {head:>20}"]
    for key, (label, fmt) in ROWS.items():
        lines.append(f"{label:<{width}}  {fmt.format(generated[key]):>12}  "
                     f"{fmt.format(floor[key]):>20}")
    for name, result in (("generated", generated), ("real digits", floor)):
        mix = " ".join(f"{d}:{100 * h:4.1f}" for d, h in enumerate(result["class_histogram"]))
        lines.append(f"class mix % ({name}): {mix}")
    if "label_accuracy" in generated:
        asked = " ".join(f"{d}:{100 * a:5.1f}" for d, a in enumerate(generated["label_accuracy"]))
        lines.append(f"asked digit drawn as asked, %: {asked}")
    return "\n".join(lines)


def summary_line(generated, floor):
    """One compact line for training logs: each metric with the real floor in brackets."""
    short = {"fd": "fd", "kid": "kid", "classifier_score": "score", "modes_covered": "modes",
             "class_kl": "class_kl", "precision": "precision", "recall": "recall"}
    return "  ".join(f"{name}={ROWS[key][1].format(generated[key])} "
                     f"[{ROWS[key][1].format(floor[key])}]" for key, name in short.items())


def evaluate_generator(generator, num_samples, data_dir=None, seed=0, labels=None):
    """(metrics of num_samples generated images, real floor at the same count); labels:
    as sample_images."""
    generated = evaluate_images(sample_images(generator, num_samples, seed, labels=labels),
                                data_dir)
    return generated, real_floor(num_samples, data_dir)


def training_eval(generator, step, num_samples, data_dir=None, labels=None):
    """What training records every --eval_every steps: the metrics of num_samples samples
    (always from the same noise, so they compare across steps). Returns (scalars named
    eval/<metric> for TensorBoard and the history, the log line with the real floor in
    brackets)."""
    images = sample_images(generator, num_samples, labels=labels)
    if images.ndim == 4:  # [N, 28, 28, 3]: a Stacked MNIST generator's
        from gan import stacked

        return stacked.training_eval(images, step, data_dir)
    generated = evaluate_images(images, data_dir)
    floor = real_floor(num_samples, data_dir)
    scalars = {f"eval/{key}": generated[key] for key in ROWS}
    line = (f"eval at epoch {step} ({num_samples} samples; [real floor]): "
            + summary_line(generated, floor))
    return scalars, line
