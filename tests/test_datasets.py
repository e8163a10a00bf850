"""The dataset descriptions (gan.datasets): what they say, that nothing else tests a dataset's
name, and that a new MNIST-like dataset is one entry plus its classifier's weights."""

import glob
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, tiny_config
from gan import datasets


def test_the_registered_descriptions():
    mnist, fashion, stacked = (datasets.get(n) for n in ("mnist", "fashion_mnist",
                                                          "stacked_mnist"))
    assert (mnist.image_shape, mnist.channels, mnist.num_classes) == ((28, 28), 1, 10)
    assert fashion.class_names[9] == "Ankle boot" and fashion.source == "fashion_mnist"
    # Stacked MNIST: three MNIST digits as channels, 1,000 modes, judged by MNIST's classifier.
    assert (stacked.image_shape, stacked.channels, stacked.num_modes) == ((28, 28, 3), 3, 1000)
    assert stacked.source == "mnist" and stacked.classifier_weights is None
    assert (stacked.evaluation, stacked.eval_samples) == ("modes", 26000)
    # Conditional labels: one per class; with --clusters=K, one per tuple of channel clusters.
    assert mnist.label_count() == 10 and mnist.label_count(7) == 7
    assert stacked.label_parts(5) == 3 and stacked.label_count(5) == 125
    assert stacked.label_parts() == 1


def test_an_unknown_name_is_refused_naming_the_flag_and_the_choices():
    with pytest.raises(ValueError, match=r"^--dataset must be one of mnist, fashion_mnist, "
                                         r"stacked_mnist, got 'cifar10'$"):
        datasets.get("cifar10")
    assert datasets.of_architecture({"model": "mlp"}) is datasets.get("mnist")  # old records


def test_descriptions_import_without_tensorflow():
    # Flag validation reads them: it must stay fast.
    code = ("import sys, gan.datasets, gan.config; gan.config.TrainConfig().validate(); "
            "print('tensorflow' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_no_other_module_tests_a_dataset_name():
    names = "|".join(map(re.escape, datasets.DATASETS))
    pattern = re.compile(rf"""(==|!=|\bin)\s*\(?\s*["']({names})["']""")
    descriptions = os.path.join(REPO, "gan", "datasets", "__init__.py")
    modules = sorted(glob.glob(os.path.join(REPO, "gan", "**", "*.py"), recursive=True))
    assert descriptions in modules and len(modules) > 30
    found = []
    for path in modules:
        if path != descriptions:
            with open(path) as f:
                found += [f"{os.path.relpath(path, REPO)}:{i}: {line.strip()}"
                          for i, line in enumerate(f, 1) if pattern.search(line)]
    assert not found, "\n".join(found)


# --- a made-up MNIST-like dataset, registered here only ---------------------------------

BAR_ROWS = (4, 10, 16, 22)  # class k: a horizontal bar 3 pixels high from row BAR_ROWS[k]


def bars(split, data_dir):
    """The made-up dataset's loader: (images uint8 [N, 28, 28], labels int32 [N]), class k a
    bright bar at BAR_ROWS[k] of random length over faint noise; a function of the split."""
    del data_dir  # nothing on disk
    n = BARS.split_sizes[split]
    rng = np.random.default_rng({"train": 0, "test": 1}[split])
    labels = rng.integers(0, len(BAR_ROWS), n).astype(np.int32)
    images = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
    for image, label, start, length in zip(images, labels, rng.integers(2, 8, n),
                                           rng.integers(12, 20, n)):
        image[BAR_ROWS[label]:BAR_ROWS[label] + 3, start:start + length] = 255
    return images, labels


BARS = datasets.Dataset(
    name="bars", title="Bars", class_names=("top", "upper", "lower", "bottom"),
    split_sizes={"train": 512, "test": 200}, loader=bars,
    classifier_weights="(set by the test: a file under tmp_path)", classifier_epochs=2,
    words=("bar", "bars", "real bars"))


@pytest.fixture
def bars_dataset(tmp_path, monkeypatch):
    """Registers BARS (with its classifier trained and saved under tmp_path) for one test."""
    import dataclasses

    from gan.datasets import load as data
    from gan.evaluation import classifier

    weights = str(tmp_path / "bars_classifier.weights.h5")
    spec = dataclasses.replace(BARS, classifier_weights=weights)  # a whole path
    monkeypatch.setitem(datasets.DATASETS, "bars", spec)
    images, labels = data.load_split("bars", "train")
    model = classifier.train_classifier(images / 255.0, labels, epochs=spec.classifier_epochs,
                                        dataset="bars")
    classifier.save_weights(model, weights)
    test_images, test_labels = data.load_split("bars", "test")
    assert classifier.accuracy(classifier.for_dataset("bars"), test_images / 255.0,
                               test_labels) > 0.95
    return spec


def test_a_made_up_dataset_trains_samples_evaluates_and_exports(tmp_path, bars_dataset):
    from gan.evaluation import evaluator as eval_lib
    from gan.models import inference
    from gan.training import checkpoints, run as train_lib

    logged = []
    config = tiny_config(tmp_path, dataset="bars", conditional=True, epochs=40,
                         checkpoint_every=40, save_every=20, num_images=4, eval_every=20,
                         eval_samples=40, batch_size=16)
    train_lib.train(config, log=logged.append)
    # In-training evaluation judged by the bars classifier: the figures of evaluate.
    evals = [line for line in logged if line.startswith("eval at epoch")]
    assert len(evals) == 2 and "score=" in evals[0] and "modes=" in evals[0]
    assert sorted(os.listdir(config.image_dir)) == ["generated_0.png", "generated_20.png"]

    generator, architecture, step = checkpoints.restore_generator(config.checkpoint_dir)
    assert step == 40 and architecture["dataset"] == "bars"
    # Sampling asks a conditional generator for each of the 4 classes in turn.
    labels = inference.sampling_labels(architecture, 40)
    assert labels.tolist() == [0, 1, 2, 3] * 10
    images = eval_lib.sample_images(generator, 40, labels=labels)
    assert images.shape == (40, 28, 28)

    generated, floor = eval_lib.evaluate(images, "bars", labels=labels)
    assert len(generated["class_histogram"]) == 4 and len(generated["label_accuracy"]) == 4
    # Real bars are the floor: every class present, confidently classified.
    assert floor["num_samples"] == 40 and floor["modes_covered"] == 4
    table = eval_lib.format_table(generated, floor, "bars")
    assert "bars >= 2% of samples (of 4)" in table and "real bars (40)" in table
    assert "asked bar drawn as asked" in table

    module = inference.GeneratorModule(generator, architecture)
    assert int(module.num_classes.numpy()) == 4
    assert json.loads(module.architecture.numpy())["dataset"] == "bars"
    import tensorflow as tf

    with pytest.raises(tf.errors.InvalidArgumentError, match="labels must be < 4"):
        module.generate(np.zeros([1, 100], np.float32), np.array([4], np.int32))
