"""Shared fixtures: the offline MNIST copy in ../shared/data (or $TFDS_DATA_DIR)."""

import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(os.path.dirname(REPO), "shared", "data")

# Derived files (decoded MNIST arrays, XLA's compiled programs) go to a folder of this test
# process, inherited by the commands it starts, never to the user's ~/.cache/gan: a stale or
# broken entry there cannot change a test's outcome.
TEST_CACHE = tempfile.mkdtemp(prefix="gan-test-cache-")
os.environ["GAN_CACHE_DIR"] = TEST_CACHE


def pytest_unconfigure(config):
    shutil.rmtree(TEST_CACHE, ignore_errors=True)


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
def fashion_data_dir():
    """A TFDS folder holding fashion_mnist/3.0.1 (tests named ..._real_fashion_mnist)."""
    folder = os.environ.get("TFDS_DATA_DIR") or os.path.join(SHARED_DATA, "tensorflow_datasets")
    if not os.path.isdir(os.path.join(folder, "fashion_mnist")):
        pytest.skip("no prepared Fashion-MNIST: set TFDS_DATA_DIR (see ../shared/data/README.md)")
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


def start_cli(module, *args, log_path):
    """Starts `python -m module args...` like run_cli but without waiting; stdout and stderr
    go to the file `log_path` (a pipe nobody reads could fill up and stall the child)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    with open(log_path, "w") as log:
        return subprocess.Popen([sys.executable, "-m", module, *args], cwd=REPO, env=env,
                                stdout=log, stderr=subprocess.STDOUT, text=True)


def wait_for_file(path, process, timeout=300):
    """Waits until `path` exists; fails if `process` exits first or time runs out."""
    deadline = time.time() + timeout
    while not os.path.exists(path):
        assert process.poll() is None, f"exited with {process.returncode} before {path} appeared"
        assert time.time() < deadline, f"{path} did not appear within {timeout}s"
        time.sleep(0.005)


def checkpoint_tensors(prefix):
    """{name: value} of every tensor stored in the checkpoint `prefix`."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(prefix)
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def file_snapshot(folder):
    """{relative path: (mtime_ns, bytes)} of every file under `folder`."""
    out = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, folder)] = (os.stat(path).st_mtime_ns, f.read())
    return out


@pytest.fixture(scope="session")
def generator_checkpoint(tmp_path_factory):
    """(checkpoint_dir, generator weights) of a step-5 checkpoint whose generator weights were
    moved away from their initial values, so a freshly built generator cannot match them.
    Needs no data."""
    from gan import checkpoints
    from gan import step as step_lib
    from gan.config import TrainConfig

    folder = str(tmp_path_factory.mktemp("generator_checkpoint"))
    state = step_lib.create_state(TrainConfig(seed=11))
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
