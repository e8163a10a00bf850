"""Evaluation of generated images of any dataset (gan.datasets): one `evaluate`, used by
`python -m gan.evaluate` and by training's --eval_every alike.

`evaluate(images, dataset)` returns (generated, floor): the figures of the images and the
same for as many real training images (what a perfect generator would reach at that sample
size; the figures are biased by it, so compare at equal counts). For a generator asked for
classes, both also hold label_accuracy per class: how often the samples are classified as
the class asked for, and how often the classifier is right on the real test images of that
class (the classifier's own accuracy: a generator cannot be judged better). Which figures depends on
the Dataset's `evaluation`:
  "features": every metric of gan.evaluation.metrics in the features of the dataset's classifier
      (gan.evaluation.classifier), against its test split (evaluate_images, real_floor);
  "modes": each channel classified by the classifier of the dataset it is drawn from, the
      modes (class tuples) covered and KL from uniform (PacGAN's Stacked MNIST protocol:
      mode_metrics, mode_floor).
Also: loading images from a .npy or a PNG folder, which dataset a checkpoint is judged as,
the printed table, and the one-line summary that training logs.
"""

import dataclasses
import functools
import glob
import hashlib
import os
import zipfile

import numpy as np

from gan import datasets, files
from gan.datasets import load as data, stacked
from gan.evaluation import classifier, metrics

K_NEAREST = 3
MIN_IMAGES = 10  # fewer cannot fill a 3-NN manifold or a covariance meaningfully
FLOOR_SEED = 0  # which training images make the floor; fixed so floors are comparable

# name in the results -> (label in the table, in the dataset's words; format)
ROWS = {
    "fd": ("Fréchet distance (lower is better)", "{:.3f}"),
    "kid": ("kernel distance KID (lower)", "{:.5f}"),
    "classifier_score": ("classifier score (max {classes})", "{:.3f}"),
    "modes_covered": ("{many} >= 2% of samples (of {classes})", "{}"),
    "class_kl": ("class-mix KL from uniform (lower)", "{:.4f}"),
    "precision": ("precision, k=3 (realism)", "{:.3f}"),
    "recall": ("recall, k=3 (variety)", "{:.3f}"),
}

# what training logs of a "modes" evaluation: name in the results -> short name, format
MODE_SUMMARY = {"modes_covered": ("modes", "{}"), "kl": ("kl", "{:.4f}")}


@dataclasses.dataclass(frozen=True)
class Reference:
    """A dataset's test split in its classifier's space: features [N, 64], their mean and
    covariance, each point's distance to its K_NEAREST-th neighbour (the real manifold), and
    label_accuracy [C], the classifier's accuracy on the split's images of each class."""

    features: np.ndarray
    mean: np.ndarray
    cov: np.ndarray
    radii: np.ndarray
    label_accuracy: np.ndarray


@functools.lru_cache(maxsize=4)
def _reference(data_dir, dataset):
    images, labels = data.load_split(dataset, "test", data_dir)
    path = reference_cache_path(dataset, images, labels)
    try:
        with np.load(path) as f:
            return Reference(**{name: f[name] for name in Reference.__dataclass_fields__})
    except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile):
        pass  # not cached yet, damaged, or of an older Reference: compute it (and cache it)
    features, probs = classifier.features_and_probs(images / 255.0,
                                                    classifier.for_dataset(dataset))
    reference = Reference(features, *metrics.mean_and_covariance(features),
                          metrics.knn_radii(features, K_NEAREST),
                          np.array(label_accuracy(probs, labels)))
    files.write_cached_arrays(path, **dataclasses.asdict(reference))
    return reference


def reference_cache_path(dataset, images, labels):
    """Where the Reference of `dataset`'s test split (`images`, `labels`) is cached (its
    10,000 features take seconds to compute, in every process that evaluates): in
    gan.files.cache_dir(), named by a fingerprint of what it is computed from, the test
    images and labels, the classifier's weights file, K_NEAREST and the TensorFlow and Keras
    versions (their arithmetic)."""
    import keras
    import tensorflow as tf

    digest = hashlib.sha256(np.ascontiguousarray(images).tobytes())
    digest.update(np.ascontiguousarray(labels, np.int64).tobytes())
    with open(classifier.weights_path(dataset), "rb") as f:
        digest.update(f.read())
    digest.update(f"{K_NEAREST} {tf.__version__} {keras.__version__}".encode())
    return os.path.join(files.cache_dir(), f"reference-{dataset}-{digest.hexdigest()[:16]}.npz")


def reference(data_dir=None, dataset="mnist"):
    """The test-split Reference of `dataset`, computed once per process, data folder and
    dataset, and kept on disk for later processes (reference_cache_path)."""
    classifier.weights_path(dataset)  # ValueError naming --dataset before any data is read
    return _reference(files.resolve_data_dir(data_dir), dataset)


def check_images(images, source="images", dataset="mnist"):
    """images as float32 [N, H, W] (or [N, H, W, C]: the Dataset's image_shape, 28x28 or
    28x28x3 for Stacked MNIST) in [0, 1]; accepts uint8 (0-255), float in [0, 1], and a
    trailing channel of 1 for one-channel images. Raises ValueError naming `source` for
    anything else."""
    shape = datasets.get(dataset).image_shape
    images = np.asarray(images)
    if len(shape) == 2 and images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
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


def load_images(path, dataset="mnist"):
    """Images of `dataset` from a .npy file ([N, H, W], uint8 or float in [0, 1]; [N, H, W,
    C] for C channels) or a folder of PNGs (H x W each, read in name order; grayscale, or
    RGB for 3 channels): float32 [N, H, W] (or [N, H, W, C]) in [0, 1]."""
    spec = datasets.get(dataset)
    if os.path.isdir(path):
        files = sorted(glob.glob(os.path.join(path, "*.png")))
        if not files:
            raise ValueError(f"--images={path}: the folder holds no .png files")
        from PIL import Image

        height, width = spec.image_shape[:2]
        pixels = []
        for file in files:
            with Image.open(file) as im:
                if im.size != (width, height):
                    raise ValueError(f"--images: {file} is {im.size[0]}x{im.size[1]}, "
                                     f"expected {width}x{height}")
                pixels.append(np.asarray(im.convert("L" if spec.channels == 1 else "RGB")))
        return check_images(np.stack(pixels), f"--images={path}", dataset)
    if not os.path.isfile(path):
        raise ValueError(f"--images={path} does not exist")
    if not path.endswith(".npy"):
        raise ValueError(f"--images={path}: expected a .npy file or a folder of .png files")
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ValueError(f"--images={path} is not a readable .npy array: {e}") from None
    return check_images(array, f"--images={path}", dataset)


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
    """All "features" metrics of images [N, H, W] (see check_images) against `dataset`'s
    test split, judged by its classifier. With labels (int [N], the classes a
    class-conditional generator was asked for) also "label_accuracy": per class, the
    fraction of its samples classified as that class."""
    images = check_images(images, dataset=dataset)
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


def real_floor(num_samples, data_dir=None, dataset="mnist"):
    """The metrics of `num_samples` (at most the training split's size) random training
    images of `dataset` against its test split: the best a generator can expect at that
    sample size. Cached per process."""
    classifier.weights_path(dataset)  # ValueError naming --dataset before any data is read
    return _real_floor(min(int(num_samples), datasets.get(dataset).split_sizes["train"]),
                       files.resolve_data_dir(data_dir), dataset)


# --- "modes": class tuples over the channels (Stacked MNIST) ------------------------------


def classify_modes(images, dataset):
    """The mode int [N] of each of `dataset`'s images [N, H, W, C] in [0, 1]: each channel
    classified on its own by the classifier of the dataset the channels are drawn from
    (Stacked MNIST: MNIST's), the C classes combined as stacked.triple_labels does (100a +
    10b + c for digits a, b, c)."""
    spec = datasets.get(dataset)
    model = classifier.for_dataset(spec.stacked_from)
    images = np.asarray(images, np.float32)
    classes = [np.argmax(classifier.features_and_probs(images[..., c], model)[1], axis=1)
               for c in range(spec.channels)]
    return stacked.triple_labels(np.stack(classes, axis=-1), spec.num_classes)


def mode_metrics(modes, dataset):
    """{"num_samples", "modes_covered": distinct modes seen (of num_modes: 1,000 for Stacked
    MNIST), "kl": KL(p || uniform over the modes) in nats, "kl_channels", "dependence"} of
    modes int [N] (classify_modes), p the modes' frequencies. KL = sum_t p_t ln(M p_t): 0 for
    a perfectly even spread, ln M for one mode. It splits exactly into kl_channels, the sum
    over the channels of KL(p_c || uniform over the classes) (uneven classes within a
    channel), plus dependence, the total correlation KL(p || p_a p_b p_c) (classes that go
    together across channels)."""
    spec = datasets.get(dataset)
    modes = np.asarray(modes)
    counts = np.bincount(modes, minlength=spec.num_modes)
    p = counts / len(modes)
    kl = metrics.kl_from_uniform(p)
    joint = p.reshape((spec.num_classes,) * spec.channels)  # [a, b, c]
    kl_channels = sum(
        metrics.kl_from_uniform(joint.sum(axis=tuple(a for a in range(spec.channels) if a != c)))
        for c in range(spec.channels))
    return {"num_samples": int(len(modes)), "modes_covered": int(np.count_nonzero(counts)),
            "kl": kl, "kl_channels": kl_channels, "dependence": kl - kl_channels}


@functools.lru_cache(maxsize=2)
def _training_classes(data_dir, source):
    """The classifier's class for each training image of `source`, int [N]."""
    images, _ = data.load_split(source, "train", data_dir)
    return np.argmax(classifier.features_and_probs(
        images / 255.0, classifier.for_dataset(source))[1], axis=1)


def mode_floor(num_samples, data_dir=None, dataset="stacked_mnist"):
    """mode_metrics of num_samples real images of `dataset` (C training images of its source
    drawn uniformly at random, seeded by FLOOR_SEED), classified as generated ones are: what
    a perfect generator reaches at that sample size."""
    spec = datasets.get(dataset)
    classes = _training_classes(files.resolve_data_dir(data_dir), spec.stacked_from)
    drawn = np.random.default_rng(FLOOR_SEED).integers(len(classes),
                                                       size=(num_samples, spec.channels))
    return mode_metrics(stacked.triple_labels(classes[drawn], spec.num_classes), dataset)


def mode_table(generated, floor, dataset):
    """The readable table of a "modes" evaluation: modes and KL, generated beside the floor."""
    spec = datasets.get(dataset)
    n = generated["num_samples"]
    one, many = spec.words[:2]
    rows = [(f"modes covered (of {spec.num_modes}, higher)", "modes_covered", "{}"),
            ("KL(samples || uniform), nats (lower)", "kl", "{:.4f}"),
            (f"  of which: uneven {many} per channel", "kl_channels", "{:.4f}"),
            ("  of which: dependence across channels", "dependence", "{:.4f}")]
    head = f"{spec.words[2]} ({n})"
    lines = [f"{'':<38}  {'generated':>10}  {head:>20}"]
    lines += [f"{label:<38}  {fmt.format(generated[key]):>10}  {fmt.format(floor[key]):>20}"
              for label, key, fmt in rows]
    return "\n".join(lines)


# --- one evaluate for every dataset ------------------------------------------------------


def evaluate(images, dataset="mnist", data_dir=None, labels=None):
    """(generated, floor): the figures of images (as check_images takes them) judged as
    `dataset`'s (its Dataset's `evaluation`, see the module's doc), and the same figures of
    as many real training images. labels int [N]: the classes a class-conditional generator
    was asked for ("features" evaluations then add label_accuracy); None otherwise."""
    spec = datasets.get(dataset)
    images = check_images(images, dataset=dataset)
    if spec.evaluation == "modes":
        return (mode_metrics(classify_modes(images, dataset), dataset),
                mode_floor(len(images), data_dir, dataset))
    floor = real_floor(len(images), data_dir, dataset)
    if labels is not None:  # the bar of label_accuracy: the classifier on real test images
        floor = {**floor, "label_accuracy": classifier_accuracy(data_dir, dataset)}
    return evaluate_images(images, data_dir, labels, dataset), floor


def classifier_accuracy(data_dir=None, dataset="mnist"):
    """Per class, the fraction of `dataset`'s test images of that class that its classifier
    gets right: a list of C floats (4 decimals, as label_accuracy is reported)."""
    return [round(float(a), 4) for a in reference(data_dir, dataset).label_accuracy]


def judged_as(dataset):
    """How the printed heading says what the images are judged against."""
    spec = datasets.get(dataset)
    if spec.evaluation == "modes":
        source = datasets.get(spec.stacked_from)
        return f"each channel classified as an {source.title} {source.words[0]}"
    return f"against the {spec.title} test split"


def format_table(generated, floor, dataset="mnist"):
    """The readable table of evaluate's (generated, floor)."""
    if datasets.get(dataset).evaluation == "modes":
        return mode_table(generated, floor, dataset)
    return feature_table(generated, floor, dataset)


def summary(generated, floor, dataset="mnist"):
    """What training records of evaluate's (generated, floor): (scalars eval/<figure> for
    TensorBoard and the history, one compact line of the figures with the floor in
    brackets)."""
    if datasets.get(dataset).evaluation == "modes":
        shown = MODE_SUMMARY
    else:
        shown = {key: (short, ROWS[key][1]) for key, short in SHORT_NAMES.items()}
    scalars = {f"eval/{key}": generated[key] for key in shown}
    line = "  ".join(f"{short}={fmt.format(generated[key])} [{fmt.format(floor[key])}]"
                     for key, (short, fmt) in shown.items())
    return scalars, line


def checkpoint_dataset(architecture):
    """The dataset a checkpoint's generator was trained on (its architecture dict)."""
    return datasets.of_architecture(architecture).name


def resolve_dataset(asked, architecture=None):
    """The dataset to judge by: --dataset (`asked`, None if not given), else the checkpoint's
    (`architecture`), else mnist. ValueError naming --dataset if it is unknown or is not the
    one the checkpoint's generator was trained on."""
    trained_on = checkpoint_dataset(architecture) if architecture is not None else None
    dataset = datasets.get(asked or trained_on or datasets.MNIST.name).name
    if trained_on is not None and dataset != trained_on:
        raise ValueError(f"--dataset={dataset}, but the generator was trained on {trained_on}; "
                         f"judge it with --dataset={trained_on} (or leave the flag out)")
    return dataset


def sample_images(generator, num_samples, seed=0, truncation=0.0, labels=None):
    """num_samples images float32 numpy [N, H, W] (or [N, H, W, C]) in [0, 1] from
    `generator`: the images of `python -m gan.sample --seed=seed --truncation=truncation` (a
    stateless draw, which never touches the training noise generator; truncation: see
    inference.sample_noise). labels int [N]: what a conditional generator is asked for
    (inference.sampling_labels), None for an unconditional one."""
    from gan.models import inference

    noise = inference.sample_noise(num_samples, generator.inputs[0].shape[-1], seed,
                                   truncation)
    return inference.generate(generator, noise, labels).numpy()


def label_accuracy(probs, labels):
    """For each class d, the fraction of the samples asked to be d that the classifier
    (probabilities [N, C]) calls d: a list of C floats (NaN where none was asked)."""
    predicted = np.argmax(probs, axis=1)
    labels = np.asarray(labels)
    return [float(np.mean(predicted[labels == d] == d)) if np.any(labels == d) else float("nan")
            for d in range(probs.shape[1])]


def feature_table(generated, floor, dataset="mnist"):
    """The readable table of a "features" evaluation: one row per metric, generated beside
    the real floor, then the class mixes in percent (in the Dataset's words: digits for
    MNIST, classes for others)."""
    spec = datasets.get(dataset)
    one, many, real = spec.words
    labels = {key: label.format(many=many, classes=spec.num_classes)
              for key, (label, _) in ROWS.items()}
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
    if "label_accuracy" in floor:
        right = " ".join(f"{d}:{100 * a:5.1f}" for d, a in enumerate(floor["label_accuracy"]))
        lines.append(f"classifier right on real test {many}, %: {right}")
    return "\n".join(lines)


# the short names of training's log line
SHORT_NAMES = {"fd": "fd", "kid": "kid", "classifier_score": "score", "modes_covered": "modes",
               "class_kl": "class_kl", "precision": "precision", "recall": "recall"}


def training_eval(generator, step, num_samples, data_dir=None, labels=None, dataset="mnist",
                  truncation=0.0):
    """What training records every --eval_every steps: evaluate's figures of num_samples
    samples (always from the same noise, so they compare across steps; at the run's
    sampling `truncation`), judged as images of `dataset` (the run's --dataset). Returns
    (scalars named eval/<figure> for TensorBoard and the history, the log line with the real
    floor in brackets)."""
    images = sample_images(generator, num_samples, truncation=truncation, labels=labels)
    # Judged as unconditional samples (no label_accuracy): a --clusters run's labels are
    # clusters, not classes.
    scalars, line = summary(*evaluate(images, dataset, data_dir), dataset)
    drawn = f"{num_samples} samples" + (f" at truncation {truncation:g}" if truncation else "")
    return scalars, f"eval at epoch {step} ({drawn}; [real floor]): {line}"
