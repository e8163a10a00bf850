"""Shared fixtures: the offline MNIST copy in ../shared/data (or $TFDS_DATA_DIR)."""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(os.path.dirname(REPO), "shared", "data")


def tfds_data_dir():
    folder = os.environ.get("TFDS_DATA_DIR") or os.path.join(SHARED_DATA, "tensorflow_datasets")
    return folder if os.path.isdir(os.path.join(folder, "mnist")) else None


@pytest.fixture(scope="session")
def data_dir():
    """A TFDS folder holding mnist/3.0.1; tests needing real data skip without it."""
    folder = tfds_data_dir()
    if folder is None:
        pytest.skip("no prepared MNIST: set TFDS_DATA_DIR (see ../shared/data/README.md)")
    return folder


@pytest.fixture(scope="session")
def idx_dir():
    folder = os.path.join(SHARED_DATA, "mnist")
    if not os.path.isfile(os.path.join(folder, "train-images-idx3-ubyte.gz")):
        pytest.skip("no MNIST IDX files in ../shared/data/mnist")
    return folder


@pytest.fixture(scope="session")
def mnist_train(data_dir):
    from gan import data

    return data.load_split("mnist", "train", data_dir)


def run_cli(module, *args, env=None, timeout=600):
    """Runs `python -m module args...` from the repo root; returns the CompletedProcess."""
    full_env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **(env or {}))
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def generator_checkpoint(tmp_path_factory):
    """(checkpoint_dir, generator weights) of a step-5 checkpoint whose generator weights were
    moved away from their initial values, so a freshly built generator cannot match them.
    Needs no data."""
    from gan import checkpoints, train_lib
    from gan.config import TrainConfig

    folder = str(tmp_path_factory.mktemp("generator_checkpoint"))
    state = train_lib.create_state(TrainConfig(seed=11))
    for variable in state.generator.trainable_variables:
        variable.assign(variable * 1.5 + 0.01)
    state.step.assign(5)
    checkpoints.make_manager(state, folder, 1).save(checkpoint_number=5)
    return folder, [v.numpy() for v in state.generator.trainable_variables]


def generator_with(weights, noise_dim=100):
    """The mlp generator holding `weights`."""
    from gan import models

    generator = models.build_mlp_generator(noise_dim)
    generator.set_weights(weights)
    return generator
