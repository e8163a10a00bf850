"""The classifiers that judge generated images, one per dataset, and their committed weights.

One small CNN (121,994 parameters, ~0.5 MB of weights), trained once on MNIST digits and
once on Fashion-MNIST clothes:
  x[28,28] -> Conv 32 3x3 ReLU [26,26] -> MaxPool 2 [13,13] -> Conv 64 3x3 ReLU [11,11]
           -> Conv 64 3x3 ReLU [9,9] -> MaxPool 2 [4,4] -> Flatten [1024]
           -> Dense 64 ReLU ("features", the penultimate layer) -> Dense 10 softmax
The weights of each are committed in gan/assets so evaluation needs no training and no
network and gives the same numbers everywhere; `python -m gan.train_classifier
--dataset=<name>` reproduces them.
"""

import functools
import os

import keras
import numpy as np
import tensorflow as tf

from gan import datasets, files

ASSETS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets")
FEATURES_LAYER = "features"


def build_classifier(dataset="mnist"):
    """The untrained CNN of `dataset` (gan.datasets): images [N, H, W] in [0, 1] -> class
    probabilities [N, C] (28x28 and 10 classes for every dataset so far)."""
    spec = datasets.get(dataset)
    return _build(spec.image_shape[:2], spec.num_classes)


def _build(image_shape, num_classes):
    return keras.Sequential(
        [
            keras.Input(image_shape),
            keras.layers.Reshape((*image_shape, 1)),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(64, 3, activation="relu"),
            keras.layers.Conv2D(64, 3, activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu", name=FEATURES_LAYER),
            keras.layers.Dense(num_classes, activation="softmax"),
        ],
        name="mnist_classifier",
    )


def save_weights(model, path):
    """Writes the model's weights (only) to `path` (ending in .weights.h5), atomically."""
    # A compiled model's file would also hold Adam's two slots per weight (3x the size).
    plain = keras.models.clone_model(model)
    plain.set_weights(model.get_weights())

    def write(tmp):
        # Keras insists on the .weights.h5 suffix, which atomic_write's temp name lacks.
        plain.save_weights(tmp + ".weights.h5")
        os.replace(tmp + ".weights.h5", tmp)

    files.atomic_write(path, write)


def load_classifier(path=None, dataset="mnist"):
    """The trained classifier of `dataset` from `path` (default: its committed weights),
    cached per process and file; FileNotFoundError names the file."""
    spec = datasets.get(dataset)
    path = os.path.abspath(path or weights_path(dataset))  # one cache entry per file
    return _load_classifier(path, spec.image_shape[:2], spec.num_classes)


@functools.lru_cache(maxsize=4)
def _load_classifier(path, image_shape, num_classes):
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"classifier weights not found at {path}; run `python -m gan.train_classifier` "
            "to make them")
    model = _build(image_shape, num_classes)
    model.load_weights(path)
    return model


def weights_path(dataset):
    """The weights of `dataset`'s classifier (its Dataset's classifier_weights, in gan/assets
    unless a whole path); ValueError naming --dataset if it is unknown or has none."""
    spec = datasets.get(dataset)
    if spec.classifier_weights is None:
        raise ValueError(f"--dataset={dataset} has no classifier of its own (each channel is "
                         f"judged by {spec.stacked_from}'s)")
    return os.path.join(ASSETS_DIR, spec.classifier_weights)


def for_dataset(dataset="mnist"):
    """The committed classifier of `dataset` (cached per process, as load_classifier)."""
    return load_classifier(dataset=dataset)


@functools.lru_cache(maxsize=4)
def make_feature_fn(model):
    """Compiled images [B, 28, 28] -> (features [B, 64], probabilities [B, 10]); one per model."""
    both = keras.Model(model.inputs, [model.get_layer(FEATURES_LAYER).output, model.outputs[0]])
    return tf.function(lambda x: both(x, training=False), reduce_retracing=True)


def features_and_probs(images, model=None, batch_size=1000):
    """Penultimate-layer features [N, 64] and class probabilities [N, 10] (float64 numpy)
    of images [N, 28, 28] in [0, 1], in batches; `model` defaults to the committed MNIST one."""
    fn = make_feature_fn(model if model is not None else load_classifier())
    images = np.asarray(images, np.float32)
    features, probs = [], []
    for start in range(0, len(images), batch_size):
        f, p = fn(tf.constant(images[start:start + batch_size]))
        features.append(f.numpy())
        probs.append(p.numpy())
    return (np.concatenate(features).astype(np.float64),
            np.concatenate(probs).astype(np.float64))


def accuracy(model, images, labels):
    """Fraction of images [N, 28, 28] in [0, 1] whose most probable class equals labels [N]."""
    _, probs = features_and_probs(images, model)
    return float(np.mean(np.argmax(probs, axis=1) == np.asarray(labels)))


def train_classifier(images, labels, epochs=3, batch_size=64, seed=0, verbose=0,
                     dataset="mnist"):
    """Trains a fresh classifier of `dataset` on images [N, H, W] in [0, 1], labels [N]: Adam from
    learning rate 1e-3 decaying to 0 (cosine) over the run, no augmentation. Seeded, so the
    same inputs give the same weights."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()  # same weights on every run
    model = build_classifier(dataset)
    steps = epochs * -(-len(images) // batch_size)
    learning_rate = keras.optimizers.schedules.CosineDecay(1e-3, steps)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss="sparse_categorical_crossentropy")
    model.fit(np.asarray(images, np.float32), np.asarray(labels, np.int32), epochs=epochs,
              batch_size=batch_size, shuffle=True, verbose=verbose)
    return model
