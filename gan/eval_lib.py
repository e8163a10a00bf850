"""Evaluation of generated images against a dataset's test split, in the features of that
dataset's classifier (gan.classifier: MNIST digits, or Fashion-MNIST clothes).

`evaluate_images(images, dataset=...)` gives every metric of gan.metrics for images
[N, 28, 28] in [0, 1]; `real_floor(n, dataset=...)` gives the same for n real training
images of the dataset: what a perfect generator would reach with n samples (the metrics are
biased by sample size, so compare at equal n). Also:
loading images from a .npy or a PNG folder, which dataset a checkpoint is judged as, the
printed table, and the one-line summary that training logs.
"""

import dataclasses
import functools
import glob
import hashlib
import os
import zipfile

import numpy as np

from gan import classifier, data, files, metrics

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


# dataset -> words of the printed table: its name, one class, its classes, its real images
WORDS = {"mnist": ("MNIST", "digit", "digits", "real digits"),
         "fashion_mnist": ("Fashion-MNIST", "class", "classes", "real images")}


@dataclasses.dataclass(frozen=True)
class Reference:
    """A dataset's test split in its classifier's space: features [N, 64], their mean and
    covariance, and each point's distance to its K_NEAREST-th neighbour (the real manifold)."""

    features: np.ndarray
    mean: np.ndarray
    cov: np.ndarray
    radii: np.ndarray


@functools.lru_cache(maxsize=4)
def _reference(data_dir, dataset):
    images, _ = data.load_split(dataset, "test", data_dir)
    path = reference_cache_path(dataset, images)
    try:
        with np.load(path) as f:
            return Reference(**{name: f[name] for name in Reference.__dataclass_fields__})
    except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile):
        pass  # not cached yet, or damaged: compute it (and cache it again)
    features, _ = classifier.features_and_probs(images / 255.0,
                                                classifier.for_dataset(dataset))
    reference = Reference(features, *metrics.mean_and_covariance(features),
                          metrics.knn_radii(features, K_NEAREST))
    files.write_cached_arrays(path, **dataclasses.asdict(reference))
    return reference


def reference_cache_path(dataset, images):
    """Where the Reference of `dataset`'s test split `images` is cached (its 10,000 features
    take seconds to compute, in every process that evaluates): in gan.files.cache_dir(),
    named by a fingerprint of what it is computed from, the test images, the classifier's
    weights file, K_NEAREST and the TensorFlow and Keras versions (their arithmetic)."""
    import keras
    import tensorflow as tf

    digest = hashlib.sha256(np.ascontiguousarray(images).tobytes())
    with open(classifier.weights_path(dataset), "rb") as f:
        digest.update(f.read())
    digest.update(f"{K_NEAREST} {tf.__version__} {keras.__version__}".encode())
    return os.path.join(files.cache_dir(), f"reference-{dataset}-{digest.hexdigest()[:16]}.npz")


def reference(data_dir=None, dataset="mnist"):
    """The test-split Reference of `dataset`, computed once per process, data folder and
    dataset, and kept on disk for later processes (reference_cache_path)."""
    classifier.weights_path(dataset)  # ValueError naming --dataset before any data is read
    return _reference(data.resolve_data_dir(data_dir), dataset)


def check_images(images, source="images", channels=1):
    """images as float32 [N, 28, 28] in [0, 1] ([N, 28, 28, C] for channels C > 1: Stacked
    MNIST); accepts uint8 (0-255), float in [0, 1], and a trailing channel of 1. Raises
    ValueError naming `source` for anything else."""
    images = np.asarray(images)
    if channels == 1 and images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    shape = (28, 28) if channels == 1 else (28, 28, channels)
    if images.shape[1:] != shape:
        raise ValueError(f"{source}: expected images of shape [N, {', '.join(map(str, shape))}]"
                         f", got {list(images.shape)}")
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


def load_images(path, channels=1):
    """Images from a .npy file ([N, 28, 28], uint8 or float in [0, 1]; [N, 28, 28, C] for
    channels C > 1) or a folder of PNGs (28x28 grayscale each, read in name order; RGB for
    C = 3): float32 [N, 28, 28] (or [N, 28, 28, C]) in [0, 1]."""
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
                pixels.append(np.asarray(im.convert("L" if channels == 1 else "RGB")))
        return check_images(np.stack(pixels), f"--images={path}", channels)
    if not os.path.isfile(path):
        raise ValueError(f"--images={path} does not exist")
    if not path.endswith(".npy"):
        raise ValueError(f"--images={path}: expected a .npy file or a folder of .png files")
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ValueError(f"--images={path} is not a readable .npy array: {e}") from None
    return check_images(array, f"--images={path}", channels)


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


def evaluate_images(images, data_dir=None, labels=None, dataset="mnist"):
    """All metrics of images [N, 28, 28] (see check_images) against `dataset`'s test split,
    judged by its classifier. With labels (int [N], the classes a class-conditional
    generator was asked for) also "label_accuracy": per class, the fraction of its samples
    classified as that class."""
    images = check_images(images)
    ref = reference(data_dir, dataset)
    features, probs = classifier.features_and_probs(images, classifier.for_dataset(dataset))
    result = metrics_of(features, probs, ref)
    if labels is not None:
        result["label_accuracy"] = [round(a, 4) for a in label_accuracy(probs, labels)]
    return result


@functools.lru_cache(maxsize=4)
def _real_floor(num_samples, data_dir, dataset):
    images, _ = data.load_split(dataset, "train", data_dir)
    chosen = np.random.default_rng(FLOOR_SEED).choice(len(images), num_samples, replace=False)
    return evaluate_images(images[np.sort(chosen)], data_dir, dataset=dataset)


def real_floor(num_samples=DEFAULT_NUM_SAMPLES, data_dir=None, dataset="mnist"):
    """The metrics of `num_samples` (at most 60,000) random training images of `dataset`
    against its test split: the best a generator can expect at that sample size. Cached per
    process."""
    classifier.weights_path(dataset)  # ValueError naming --dataset before any data is read
    return _real_floor(min(int(num_samples), data.SPLIT_SIZES["train"]),
                       data.resolve_data_dir(data_dir), dataset)


# What gan.evaluate judges: a classifier's datasets, and Stacked MNIST (each channel by the
# MNIST classifier, gan.stacked; checkpoints only).
JUDGED = (*classifier.DATASETS, "stacked_mnist")


def checkpoint_dataset(architecture):
    """The dataset a checkpoint's generator was trained on (its architecture dict)."""
    return architecture.get("dataset", "mnist")


def resolve_dataset(asked, architecture=None):
    """The dataset to judge by: --dataset (`asked`, None if not given), else the checkpoint's
    (`architecture`), else mnist. ValueError naming --dataset if it is unknown or is not the
    one the checkpoint's generator was trained on."""
    trained_on = checkpoint_dataset(architecture) if architecture is not None else None
    dataset = asked or trained_on or "mnist"
    if dataset not in JUDGED:
        raise ValueError(f"--dataset must be one of {', '.join(JUDGED)}, got '{dataset}'")
    if trained_on is not None and dataset != trained_on:
        raise ValueError(f"--dataset={dataset}, but the generator was trained on {trained_on}; "
                         f"judge it with --dataset={trained_on} (or leave the flag out)")
    return dataset


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
    """For each class d, the fraction of the samples asked to be d that the classifier
    (probabilities [N, 10]) calls d: a list of 10 floats (NaN where none was asked)."""
    predicted = np.argmax(probs, axis=1)
    labels = np.asarray(labels)
    return [float(np.mean(predicted[labels == d] == d)) if np.any(labels == d) else float("nan")
            for d in range(classifier.NUM_CLASSES)]


def format_table(generated, floor, dataset="mnist"):
    """The readable table: one row per metric, generated beside the real floor, then the
    class mixes in percent (MNIST's rows speak of digits, other datasets' of classes)."""
    _, one, many, real = WORDS[dataset]
    labels = {key: label.replace("digits", many) for key, (label, _) in ROWS.items()}
    width = max(len(label) for label in labels.values())
    head = f"{real} ({floor['num_samples']})"
    lines = [f"{'metric':<{width}}  {'generated':>12}  {head:>20}"]
    for key, (_, fmt) in ROWS.items():
        lines.append(f"{labels[key]:<{width}}  {fmt.format(generated[key]):>12}  "
                     f"{fmt.format(floor[key]):>20}")
    for name, result in (("generated", generated), (real, floor)):
        mix = " ".join(f"{d}:{100 * h:4.1f}" for d, h in enumerate(result["class_histogram"]))
        lines.append(f"class mix % ({name}): {mix}")
    if "label_accuracy" in generated:
        asked = " ".join(f"{d}:{100 * a:5.1f}" for d, a in enumerate(generated["label_accuracy"]))
        lines.append(f"asked {one} drawn as asked, %: {asked}")
    return "\n".join(lines)


def summary_line(generated, floor):
    """One compact line for training logs: each metric with the real floor in brackets."""
    short = {"fd": "fd", "kid": "kid", "classifier_score": "score", "modes_covered": "modes",
             "class_kl": "class_kl", "precision": "precision", "recall": "recall"}
    return "  ".join(f"{name}={ROWS[key][1].format(generated[key])} "
                     f"[{ROWS[key][1].format(floor[key])}]" for key, name in short.items())


def evaluate_generator(generator, num_samples, data_dir=None, seed=0, labels=None,
                       dataset="mnist"):
    """(metrics of num_samples generated images, real floor at the same count), judged by
    `dataset`'s classifier against its test split; labels: as sample_images."""
    generated = evaluate_images(sample_images(generator, num_samples, seed, labels=labels),
                                data_dir, dataset=dataset)
    return generated, real_floor(num_samples, data_dir, dataset)


def training_eval(generator, step, num_samples, data_dir=None, labels=None, dataset="mnist"):
    """What training records every --eval_every steps: the metrics of num_samples samples
    (always from the same noise, so they compare across steps), judged as images of
    `dataset` (the run's --dataset). Returns (scalars named
    eval/<metric> for TensorBoard and the history, the log line with the real floor in
    brackets)."""
    images = sample_images(generator, num_samples, labels=labels)
    if images.ndim == 4:  # [N, 28, 28, 3]: a Stacked MNIST generator's
        from gan import stacked

        return stacked.training_eval(images, step, data_dir)
    generated = evaluate_images(images, data_dir, dataset=dataset)
    floor = real_floor(num_samples, data_dir, dataset)
    scalars = {f"eval/{key}": generated[key] for key in ROWS}
    line = (f"eval at epoch {step} ({num_samples} samples; [real floor]): "
            + summary_line(generated, floor))
    return scalars, line
