"""Shared fixtures: a small MNIST-shaped data set made here (tests/mock_mnist.py), the real
MNIST in ../shared/data (or $TFDS_DATA_DIR) for the few tests named `..._real_mnist`, and
checkpoints of each kind of generator."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

if __name__ != "conftest":  # e.g. `from tests.conftest import ...`
    raise ImportError(f"import the test helpers as `conftest`, not `{__name__}`: a second copy "
                      "would make (and leave behind) a second cache folder")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(os.path.dirname(REPO), "shared", "data")

# Derived files (decoded MNIST arrays, XLA's compiled programs) go to a folder of this test
# session, never to the user's ~/.cache/gan: a stale or broken entry there cannot change a
# test's outcome. The process that loads this file first (pytest, or pytest-xdist's
# controller) makes it; its workers and the commands the tests start inherit it through the
# environment, so each real split is decoded and each program compiled once per session.
# Both caches write whole files by rename, so workers may fill them at the same time.
_OWN_CACHE = "GAN_TEST_CACHE" not in os.environ
if _OWN_CACHE:
    os.environ["GAN_TEST_CACHE"] = tempfile.mkdtemp(prefix="gan-test-cache-")
TEST_CACHE = os.environ["GAN_TEST_CACHE"]
os.environ["GAN_CACHE_DIR"] = TEST_CACHE


def pytest_unconfigure(config):
    if _OWN_CACHE:
        shutil.rmtree(TEST_CACHE, ignore_errors=True)


def tiny_config(tmp_path, data_dir=None, **overrides):
    """A TrainConfig for a short in-process run writing under tmp_path: images/ and ckpt/,
    no progress lines, and no XLA (tests that put XLA under test ask for it)."""
    from gan.config import TrainConfig

    values = dict(steps_per_call=16, data_dir=data_dir, image_dir=str(tmp_path / "images"),
                  checkpoint_dir=str(tmp_path / "ckpt"), log_every_secs=1e9, xla=False)
    values.update(overrides)
    return TrainConfig(**values)


def tiny_configs(**defaults):
    """tiny_config with `defaults` under each call's overrides: one module's short runs
    (e.g. `tiny_config = conftest.tiny_configs(epochs=40, seed=3)`), named once there."""

    def make(tmp_path, data_dir=None, **overrides):
        return tiny_config(tmp_path, data_dir, **{**defaults, **overrides})

    return make


@pytest.fixture(scope="session")
def mock_splits():
    """{"train": (images, labels), "test": ...}: the arrays of the data set of `data_dir`
    (uint8 [N, 28, 28] and [N]; tests/mock_mnist.SIZES), in the order they were written."""
    import mock_mnist

    return mock_mnist.splits()


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory, mock_splits):
    """A TFDS folder holding a small MNIST-shaped 'mnist' (font digits, see
    tests/mock_mnist.py), prepared by TFDS's own MNIST builder: needs no real data."""
    import mock_mnist

    folder = tmp_path_factory.mktemp("mock_mnist")
    return mock_mnist.prepare(str(folder / "tfds"), str(folder / "idx"), mock_splits)


def real_tfds_dir():
    folder = os.environ.get("TFDS_DATA_DIR") or os.path.join(SHARED_DATA, "tensorflow_datasets")
    return folder if os.path.isdir(os.path.join(folder, "mnist")) else None


@pytest.fixture(scope="session")
def real_mnist_dir():
    """A TFDS folder holding the real mnist/3.0.1, for the few tests named `..real_mnist..`
    (known facts of MNIST); they skip without it."""
    folder = real_tfds_dir()
    if folder is None:
        pytest.skip("no prepared MNIST: set TFDS_DATA_DIR (see ../shared/data/README.md)")
    return folder


@pytest.fixture(scope="session")
def fashion_data_dir():
    """A TFDS folder holding the real fashion_mnist/3.0.1 (tests named ..._real_fashion_mnist);
    they skip without it."""
    folder = os.environ.get("TFDS_DATA_DIR") or os.path.join(SHARED_DATA, "tensorflow_datasets")
    if not os.path.isdir(os.path.join(folder, "fashion_mnist")):
        pytest.skip("no prepared Fashion-MNIST: set TFDS_DATA_DIR (see ../shared/data/README.md)")
    return folder


@pytest.fixture(scope="session")
def real_mnist_idx_dir():
    folder = os.path.join(SHARED_DATA, "mnist")
    if not os.path.isfile(os.path.join(folder, "train-images-idx3-ubyte.gz")):
        pytest.skip("no MNIST IDX files in ../shared/data/mnist")
    return folder


@pytest.fixture(scope="session")
def mnist_train(data_dir):
    """(images uint8 [N, 28, 28], labels int32 [N]) of data_dir's training split."""
    from gan.datasets import load as data

    return data.load_split("mnist", "train", data_dir)


@pytest.fixture
def train_flags():
    """parse(*args): a TrainConfig from argv parsed with gan.train's flags, as its main makes
    it (the last of a repeated flag wins); their defaults are restored afterwards."""
    from gan import train

    def parse(*args):
        train.FLAGS.unparse_flags()
        train.FLAGS(["gan.train", *args])
        return train.config_from_flags()

    yield parse
    train.FLAGS.unparse_flags()


def run_cli(module, *args, env=None, timeout=600):
    """Runs `python -m module args...` from the repo root; returns the CompletedProcess."""
    full_env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **(env or {}))
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


# Runs the `main` of a command module once per argv list, in one process: flags parsed as
# `python -m module argv...` would parse them (cli.parse_flags: a refused flag value exits 2),
# SystemExit's code and the output kept.
_CASES = """
import contextlib, importlib, io, json, sys
from absl import flags
from gan import cli
module = importlib.import_module(sys.argv[1])
results = []
for argv in json.loads(sys.argv[2]):
    flags.FLAGS.unparse_flags()
    out, err, code = io.StringIO(), io.StringIO(), 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            module.main(cli.parse_flags([sys.argv[1], *argv]))
        except SystemExit as e:
            code = e.code
    results.append({"returncode": code, "stdout": out.getvalue(), "stderr": err.getvalue()})
print("\\n@@cases@@" + json.dumps(results))
"""


def run_cli_cases(module, cases, timeout=300):
    """Like run_cli(module, *argv) for each argv (a list of strings) in `cases`, but all in one
    process, which starts (and imports TensorFlow) once: the module's main is called with its
    flags parsed from argv by cli.parse_flags, not through absl's app.run (run_cli covers
    that). Returns one object per case with returncode (0 when main returns, else its
    SystemExit's code, e.g. 2 from cli.fail), stdout and stderr."""
    import types

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run([sys.executable, "-c", _CASES, module, json.dumps(cases)],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0 and "@@cases@@" in result.stdout, result.stderr[-3000:]
    return [types.SimpleNamespace(**case)
            for case in json.loads(result.stdout.rsplit("@@cases@@", 1)[1])]


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


# The kinds of generator a checkpoint can hold: TrainConfig fields of each.
GENERATOR_KINDS = {"unconditional": {}, "digits": dict(conditional=True),
                   "clusters": dict(conditional=True, clusters=4),
                   # the original generator of a run that samples at --truncation=0.7
                   "truncated": dict(truncation=0.7)}
CLUSTER_PRIOR = [0.1, 0.2, 0.3, 0.4]  # the "clusters" checkpoint's cluster shares


def save_generator_checkpoint(folder, kind, seed=11):
    """Saves a step-5 checkpoint of the `kind` of GENERATOR_KINDS into `folder`, its generator
    weights moved away from their initial values (so a freshly built generator cannot match
    them) and, for "clusters", CLUSTER_PRIOR as its prior. Needs no data. Returns the
    generator's weights."""
    from gan.training import checkpoints
    from gan.training import step as step_lib
    from gan.config import TrainConfig

    state = step_lib.create_state(TrainConfig(seed=seed, **GENERATOR_KINDS[kind]))
    for variable in state.generator.trainable_variables:
        variable.assign(variable * 1.5 + 0.01)
    if kind == "clusters":
        state.cluster_prior.assign(CLUSTER_PRIOR)
    state.step.assign(5)
    checkpoints.make_manager(state, str(folder), 1).save(checkpoint_number=5)
    return state.generator.get_weights()


@pytest.fixture(scope="session")
def generator_checkpoint(tmp_path_factory):
    """(checkpoint_dir, generator weights) of a step-5 checkpoint of the original (mlp,
    unconditional) generator (save_generator_checkpoint)."""
    folder = str(tmp_path_factory.mktemp("generator_checkpoint"))
    return folder, save_generator_checkpoint(folder, "unconditional")


@pytest.fixture(scope="session")
def truncated_checkpoint(tmp_path_factory):
    """(checkpoint_dir, generator weights) of a step-5 checkpoint of the original generator
    whose run samples at --truncation=0.7 (save_generator_checkpoint)."""
    folder = str(tmp_path_factory.mktemp("truncated_checkpoint"))
    return folder, save_generator_checkpoint(folder, "truncated")


@pytest.fixture(scope="session")
def conditional_checkpoints(tmp_path_factory):
    """{"digits" | "clusters": (checkpoint_dir, generator weights)}: step-5 checkpoints of a
    digit-conditional and of a self-conditioned (--clusters=4) mlp generator."""
    out = {}
    for kind in ("digits", "clusters"):
        folder = str(tmp_path_factory.mktemp(f"{kind}_checkpoint"))
        out[kind] = folder, save_generator_checkpoint(folder, kind)
    return out


def generator_with(weights, noise_dim=100):
    """The mlp generator holding `weights`."""
    from gan.models import networks as models

    generator = models.build_mlp_generator(noise_dim)
    generator.set_weights(weights)
    return generator


# --- small helpers of the step tests (test_step, test_loop, test_train_lib) -----------------


def weights(model):
    """Copies of a model's trainable weights."""
    return [v.numpy().copy() for v in model.trainable_variables]


def same(a, b):
    """True if two lists of arrays are equal element for element."""
    import numpy as np

    return all(np.array_equal(x, y) for x, y in zip(a, b))


def real_batch(batch=32, seed=0):
    """Stand-in real images float32 [batch, 28, 28], uniform in [0, 1]."""
    import numpy as np
    import tensorflow as tf

    return tf.constant(np.random.default_rng(seed).uniform(0, 1, (batch, 28, 28)), tf.float32)


def noise(batch=32, seed=0):
    """Noise float32 [batch, 100] from N(0, 1)."""
    import numpy as np
    import tensorflow as tf

    return tf.constant(np.random.default_rng(seed).normal(size=(batch, 100)), tf.float32)


@pytest.fixture
def state():
    """A default-config TrainState, seed 3."""
    from gan.training import step as step_lib
    from gan.config import TrainConfig

    return step_lib.create_state(TrainConfig(seed=3))
