"""The evaluator's classifier: committed, small, accurate, and reproducible by its script."""

import os

import numpy as np
import pytest

from gan import datasets
from gan.evaluation import classifier


@pytest.mark.parametrize("dataset", ["mnist", "fashion_mnist"])
def test_committed_weights_exist_load_and_are_small(dataset):
    path = classifier.weights_path(dataset)
    assert os.path.isfile(path) and os.path.getsize(path) < 1_000_000
    model = classifier.for_dataset(dataset)
    assert model is classifier.load_classifier(path)  # loaded once per process
    assert model.output_shape == (None, datasets.get(dataset).num_classes)


def test_each_dataset_has_its_own_classifier():
    assert classifier.weights_path("mnist").endswith("mnist_classifier.weights.h5")
    assert classifier.for_dataset("mnist") is classifier.load_classifier()
    mnist, fashion = (classifier.for_dataset(d).get_weights() for d in ("mnist", "fashion_mnist"))
    assert not any(np.array_equal(x, y) for x, y in zip(mnist, fashion))
    with pytest.raises(ValueError, match="--dataset must be one of .*, got 'cifar10'"):
        classifier.weights_path("cifar10")
    # Stacked MNIST's channels are judged by MNIST's classifier: it has none of its own.
    with pytest.raises(ValueError, match="--dataset=stacked_mnist has no classifier"):
        classifier.weights_path("stacked_mnist")


def test_committed_classifier_reaches_99_percent_on_the_test_split_of_real_mnist(
        real_mnist_dir):
    from gan.datasets import load as data

    images, labels = data.load_split("mnist", "test", real_mnist_dir)
    assert classifier.accuracy(classifier.load_classifier(), images / 255.0, labels) >= 0.99


def test_committed_classifier_reaches_90_percent_real_fashion_mnist(fashion_data_dir):
    from gan.datasets import load as data

    images, labels = data.load_split("fashion_mnist", "test", fashion_data_dir)
    images, labels = images[:2000] / 255.0, labels[:2000]  # a slice: the full split is slow
    assert classifier.accuracy(classifier.for_dataset("fashion_mnist"), images, labels) >= 0.90
    # The MNIST classifier cannot stand in for it: clothes are not digits.
    assert classifier.accuracy(classifier.for_dataset("mnist"), images, labels) < 0.5


def test_features_and_probs_shapes():
    images = np.random.default_rng(0).uniform(size=(7, 28, 28))
    features, probs = classifier.features_and_probs(images, batch_size=3)
    assert features.shape == (7, 64) and probs.shape == (7, 10)
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_training_is_seeded_and_the_saved_weights_load_back(tmp_path, mnist_train):
    images, labels = mnist_train[0][:512] / 255.0, mnist_train[1][:512]
    a = classifier.train_classifier(images, labels, epochs=1, batch_size=64, seed=1)
    b = classifier.train_classifier(images, labels, epochs=1, batch_size=64, seed=1)
    for x, y in zip(a.get_weights(), b.get_weights()):
        assert np.array_equal(x, y)
    path = str(tmp_path / "c.weights.h5")
    classifier.save_weights(a, path)
    assert os.listdir(tmp_path) == ["c.weights.h5"]  # no temporary left behind
    loaded = classifier.load_classifier(path)
    probe = images[:16].astype(np.float32)
    assert np.allclose(loaded(probe).numpy(), a(probe).numpy(), atol=1e-6)


def test_missing_weights_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="gan.train_classifier"):
        classifier.load_classifier(str(tmp_path / "none.weights.h5"))


@pytest.mark.slow
def test_train_classifier_refuses_an_unknown_dataset(tmp_path):
    from conftest import run_cli

    out = tmp_path / "c.weights.h5"
    result = run_cli("gan.train_classifier", "--dataset=cifar10", f"--output={out}",
                     timeout=120)
    assert result.returncode == 2
    assert "error: --dataset must be one of mnist, fashion_mnist, got 'cifar10'" in result.stderr
    assert not out.exists()
