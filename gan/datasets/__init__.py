"""What the package knows of each dataset it trains on, one plain description each.

Data loading, training, sampling, evaluation and export read a dataset's facts from its
`Dataset` here and never test its name. No TensorFlow: flag validation imports this module.

Adding an MNIST-like dataset is one entry in DATASETS plus its classifier weights in
gan/assets (`python -m gan.train_classifier --dataset=<name>` makes them), e.g.

    DATASETS["kmnist"] = Dataset(
        name="kmnist", title="Kuzushiji-MNIST", tfds_name="kmnist", tfds_builder="KMNIST",
        class_names=("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
        classifier_weights="kmnist_classifier.weights.h5")
"""

import dataclasses
from typing import Callable

DIGITS = tuple("0123456789")


@dataclasses.dataclass(frozen=True)
class Dataset:
    """One dataset. Images are [H, W] for one channel, [H, W, C] for C channels."""

    name: str  # what --dataset says
    title: str  # how printed tables name it
    class_names: tuple  # the classes of an image (of each channel's image when stacked)
    image_shape: tuple = (28, 28)  # of one image, as the networks take and draw it
    # Images per split, as the IDX files and TFDS hold them.
    split_sizes: dict = dataclasses.field(
        default_factory=lambda: {"train": 60000, "test": 10000})
    # Where its splits come from (one of three): the TFDS dataset `tfds_name`; or, with
    # `stacked_from`, channels of independently drawn images of that dataset (built on the
    # fly, gan.datasets.stacked); or `loader(split, data_dir) -> (images uint8 [N, H, W], labels
    # int [N])`, e.g. data made up by a test.
    tfds_name: str | None = None
    stacked_from: str | None = None
    loader: Callable | None = None
    tfds_builder: str | None = None  # tfds.image_classification's builder, for gan.datasets.idx
    # Mean pixel (0-255) of its training images, for datasets prepared from IDX files: the
    # IDX files of MNIST-like datasets share names and shapes, so gan.datasets.idx tells them
    # apart by it (MNIST's thin strokes on black average 33, Fashion-MNIST's filled-in
    # clothes 73).
    mean_pixel: float | None = None
    # The classifier that judges its images: weights file in gan/assets (or a whole path);
    # None when the images are judged per channel by `stacked_from`'s classifier. Its
    # training (gan.train_classifier): epochs, and the least test accuracy to keep it.
    classifier_weights: str | None = None
    classifier_epochs: int = 3
    classifier_min_accuracy: float = 0.99
    # What its evaluation reports (gan.evaluation.evaluator.evaluate): "features" = FD, KID,
    # classifier score, classes covered, class-mix KL, precision and recall against the test
    # split; "modes" = modes covered (class tuples over the channels) and KL from uniform
    # (PacGAN's Stacked MNIST protocol). eval_samples: gan.evaluate's default sample count.
    evaluation: str = "features"
    eval_samples: int = 10000
    # Words of the printed table: one class, several classes, the real images.
    words: tuple = ("class", "classes", "real images")
    # False: a generator asked for its classes would cover its modes by construction, so
    # --conditional is allowed only with --clusters (self-conditioning on k-means clusters).
    conditional_on_classes: bool = True

    @property
    def channels(self):
        """1 for [H, W] images, else C of [H, W, C]."""
        return self.image_shape[2] if len(self.image_shape) == 3 else 1

    @property
    def num_classes(self):
        return len(self.class_names)

    @property
    def num_modes(self):
        """The distinct class tuples its images can show: num_classes ** channels."""
        return self.num_classes ** self.channels

    @property
    def source(self):
        """The dataset whose split files hold its images (itself unless stacked)."""
        return self.stacked_from or self.name

    def label_parts(self, clusters=0):
        """How many parts a conditional network's label has (gan.models.networks' label embedding):
        with --clusters one cluster id per channel, else 1."""
        return self.channels if clusters else 1

    def label_count(self, clusters=0):
        """How many labels conditional networks take: one per class; with --clusters=K, K
        clusters, and for C > 1 channels K ** C, one per tuple of the channels' clusters (the
        label of an image is ka * K**2 + kb * K + kc for three, gan.datasets.stacked)."""
        if not clusters:
            return self.num_classes
        return clusters ** self.label_parts(clusters)


MNIST = Dataset(
    name="mnist", title="MNIST", class_names=DIGITS, tfds_name="mnist", tfds_builder="MNIST",
    mean_pixel=33.3, classifier_weights="mnist_classifier.weights.h5",
    words=("digit", "digits", "real digits"))

DATASETS = {
    "mnist": MNIST,
    "fashion_mnist": Dataset(
        name="fashion_mnist", title="Fashion-MNIST",
        class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                     "Sneaker", "Bag", "Ankle boot"),
        tfds_name="fashion_mnist", tfds_builder="FashionMNIST", mean_pixel=72.9,
        classifier_weights="fashion_mnist_classifier.weights.h5", classifier_epochs=8,
        classifier_min_accuracy=0.90),
    # Three MNIST training digits as the channels of one image: 1,000 modes (gan.datasets.stacked).
    "stacked_mnist": Dataset(
        name="stacked_mnist", title="Stacked MNIST", class_names=DIGITS,
        image_shape=(28, 28, 3), stacked_from="mnist", evaluation="modes",
        eval_samples=26000,  # PacGAN's (and VEEGAN's) evaluation size
        words=("digit", "digits", "real triples"), conditional_on_classes=False),
}


def get(name):
    """The Dataset called `name`; ValueError naming --dataset and the accepted names."""
    if name not in DATASETS:
        raise ValueError(f"--dataset must be one of {', '.join(DATASETS)}, got '{name}'")
    return DATASETS[name]


def of_architecture(architecture):
    """The Dataset a checkpoint's generator was trained on (its architecture dict; mnist
    when it names none)."""
    return get(architecture.get("dataset") or MNIST.name)
