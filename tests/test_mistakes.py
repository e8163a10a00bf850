"""Mistaken commands, as a new user types them, across the seven tools: each is refused with
exit 2 and one `error:` line naming the flag or file, without a traceback, and changes
nothing on disk (no file changed, no folder, lock or log made)."""

import concurrent.futures
import gzip
import hashlib
import os
import shutil

import numpy as np
import pytest

from conftest import REPO, run_cli

PACKAGE = os.path.join(REPO, "gan")


def tree_state(folder):
    """{relative path: (kind, mode, sha256 of a file's bytes)} of every file and folder under
    `folder`: a changed, added or removed entry (an empty folder too) changes it."""
    out = {}
    for root, dirs, names in os.walk(folder):
        for name in dirs + names:
            path = os.path.join(root, name)
            digest = ""
            if os.path.isfile(path):
                with open(path, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
            out[os.path.relpath(path, folder)] = (os.path.isdir(path), os.stat(path).st_mode,
                                                  digest)
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory, data_dir, generator_checkpoint):
    """A folder of things a mistake could damage: a training run's folder (checkpoints and
    its lock, as gan.train leaves them), a file, an empty folder, folders named like files,
    the IDX files of the mock data and a copy whose train images are cut short."""
    w = tmp_path_factory.mktemp("world")
    shutil.copytree(generator_checkpoint[0], w / "ckpt")
    (w / "ckpt" / ".lock").touch()
    (w / "afile").write_text("not a folder\n")
    for folder in ("empty", "adir.png", "adir.json"):
        (w / folder).mkdir()
    idx = os.path.join(os.path.dirname(data_dir), "idx")
    shutil.copytree(idx, w / "truncated")
    cut = w / "truncated" / "train-images-idx3-ubyte.gz"
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    return {"W": str(w), "CK": str(w / "ckpt"), "DATA": data_dir, "IDX": idx,
            "PKG": PACKAGE}


# (module, argv, a text the error line must hold). Paths: W the world folder, CK its run
# folder, DATA a prepared data folder, IDX the mock IDX files, PKG the package's folder.
CASES = [
    # absl's own errors, the same in every tool (gan.cli)
    *[(module, args, text) for module in ("gan.train", "gan.sample", "gan.evaluate",
                                          "gan.export", "gan.bench", "gan.train_classifier")
      for args, text in ((["--epochz=3"], "epochz"),
                         (["--flagfile={W}/missing.flags"], "missing.flags"))],
    ("gan.sample", ["--num=abc"], "--num"),
    ("gan.evaluate", ["--seed=1.5"], "--seed"),
    ("gan.export", ["--overwrite=maybe"], "--overwrite"),
    ("gan.bench", ["--steps=many"], "--steps"),
    ("gan.train_classifier", ["--epochs=abc"], "--epochs"),
    ("gan.train", ["--epochs=abc"], "--epochs"),
    ("gan.train", ["stray"], "stray"),
    ("gan.train", ["--epochs=0"], "--epochs"),
    ("gan.train", ["--model=resnet"], "--model"),
    ("gan.train", ["--dataset=cifar10"], "--dataset"),
    ("gan.train", ["--checkpoint_dir={W}/afile"], "--checkpoint_dir"),
    ("gan.train", ["--image_dir={W}/afile/images"], "--image_dir"),
    ("gan.train", ["--data_dir={W}/afile", "--checkpoint_dir={W}/new"], "--data_dir"),
    ("gan.train", ["--data_dir={W}/empty", "--checkpoint_dir={W}/new", "--image_dir={W}/img"],
     "--prepare_from"),
    ("gan.train", ["--checkpoint_dir={CK}", "--noise_dim=64", "--image_dir={W}/img",
                   "--data_dir={DATA}"], "different configuration"),
    ("gan.sample", ["--checkpoint_dir={CK}", "--out={W}/adir.png"], "--out"),
    ("gan.sample", ["--checkpoint_dir={CK}", "--out={W}/s.txt"], "--out"),
    ("gan.sample", ["--checkpoint_dir={CK}", "--npy", "--out={W}/s.png"], "--out"),
    ("gan.sample", ["--checkpoint_dir={CK}", "--out={W}/afile/s.png"], "--out"),
    ("gan.sample", ["--checkpoint_dir={CK}", "--out={PKG}/assets/s.png"], "package"),
    ("gan.sample", ["--checkpoint_dir={CK}", "--num=0", "--out={W}/s.png"], "--num"),
    ("gan.sample", ["--checkpoint_dir={W}/afile", "--out={W}/s.png"], "is a file"),
    ("gan.export", ["--checkpoint_dir={CK}"], "--out"),
    ("gan.export", ["--checkpoint_dir={CK}", "--out={CK}", "--overwrite"], "--checkpoint_dir"),
    ("gan.export", ["--checkpoint_dir={CK}", "--out={W}", "--overwrite"], "--checkpoint_dir"),
    ("gan.export", ["--checkpoint_dir={CK}", "--out={DATA}", "--overwrite"],
     "not an earlier export"),
    ("gan.export", ["--checkpoint_dir={CK}", "--out={PKG}", "--overwrite"], "package"),
    ("gan.export", ["--checkpoint_dir={CK}", "--out={PKG}/assets/export"], "package"),
    ("gan.export", ["--checkpoint_dir={CK}", "--out={W}/afile"], "--out"),
    ("gan.export", ["--checkpoint_dir={W}/afile", "--out={W}/export"], "is a file"),
    ("gan.evaluate", ["--checkpoint_dir={CK}", "--json_out={W}/afile/r.json"], "--json_out"),
    ("gan.evaluate", ["--checkpoint_dir={CK}", "--json_out={W}/r.txt"], "--json_out"),
    ("gan.evaluate", ["--checkpoint_dir={CK}", "--json_out={W}/adir.json"], "--json_out"),
    ("gan.evaluate", ["--checkpoint_dir={CK}", "--data_dir={W}/afile"], "--data_dir"),
    ("gan.evaluate", ["--checkpoint_dir={CK}", "--dataset=cifar10"], "--dataset"),
    ("gan.bench", ["--batch_sizes=0"], "--batch_sizes"),
    ("gan.bench", ["--batch_sizes=32,abc"], "--batch_sizes"),
    ("gan.bench", ["--steps=0"], "--steps"),
    ("gan.bench", ["--json_out={W}/afile/b.json"], "--json_out"),
    ("gan.bench", ["--json_out={W}/b.txt"], "--json_out"),
    ("gan.bench", ["--data_dir={W}/afile"], "--data_dir"),
    ("gan.train_classifier", ["--output={PKG}/assets/mnist_classifier.weights.h5"], "package"),
    ("gan.train_classifier", ["--output={W}/afile/c.weights.h5"], "--output"),
    ("gan.train_classifier", ["--output={W}/c.h5"], "--output"),
    ("gan.train_classifier", ["--output={W}/empty"], "--output"),
    ("gan.train_classifier", ["--dataset=stacked_mnist", "--output={W}/c.weights.h5"],
     "--dataset"),
    ("gan.train_classifier", ["--epochs=0", "--output={W}/c.weights.h5"], "--epochs"),
    ("gan.train_classifier", ["--data_dir={W}/afile", "--output={W}/c.weights.h5"],
     "--data_dir"),
    ("gan.data", ["--dataset=stacked_mnist", "--prepare_from={IDX}", "--data_dir={W}/prep"],
     "stacked_mnist"),
    ("gan.data", ["--prepare_from={W}/truncated", "--data_dir={W}/prep"],
     "train-images-idx3-ubyte.gz is truncated"),
    ("gan.data", ["--prepare_from={W}/empty", "--data_dir={W}/prep"], "train-images-idx3-ubyte"),
    ("gan.data", ["--prepare_from={W}/afile", "--data_dir={W}/prep"], "--prepare_from"),
    ("gan.data", ["--prepare_from={IDX}", "--data_dir={W}/afile"], "--data_dir"),
    ("gan.data", ["--data_dir={W}/prep"], "--prepare_from"),
    ("gan.data", ["--prepare_fro={IDX}"], "prepare_fro"),
]


def check_refusals(cases, paths, watched):
    """Runs every (module, argv, text) of `cases` (argv's {names} filled from `paths`), a few
    at a time, and checks each refusal; then that the `watched` folders are unchanged."""
    before = {folder: tree_state(folder) for folder in watched}

    def run(case):
        module, args, _ = case
        return run_cli(module, *[a.format(**paths) for a in args], timeout=300)

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(run, cases))
    for (module, args, text), result in zip(cases, results):
        where = f"{module} {' '.join(args)}:\n{result.stderr[-2000:]}"
        assert result.returncode == 2, where
        assert "Traceback" not in result.stderr, where
        errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and text in errors[0], where
    for folder in watched:
        assert tree_state(folder) == before[folder], folder


@pytest.mark.slow
def test_mistaken_commands_are_refused_and_change_nothing(world):
    check_refusals(CASES, world, [world["W"], world["DATA"], world["IDX"], PACKAGE])


@pytest.mark.slow
def test_the_idx_files_of_one_dataset_are_not_prepared_as_another(
        real_mnist_idx_dir, tmp_path):
    cases = [("gan.data", ["--dataset=fashion_mnist", "--prepare_from={IDX}",
                           "--data_dir={W}/prep"], "mean pixel")]
    check_refusals(cases, {"IDX": real_mnist_idx_dir, "W": str(tmp_path)},
                   [str(tmp_path), real_mnist_idx_dir])


def test_bad_idx_files_are_refused_naming_the_file(tmp_path):
    from gan.datasets import idx
    import mock_mnist

    images = np.zeros((4, 28, 28), np.uint8)
    mock_mnist.write_idx(tmp_path / "train-images-idx3-ubyte.gz", images)
    mock_mnist.write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.array([0, 1, 12, 3]))
    with mock_mnist.sized_mnist({"train": 4, "test": 1}), \
            pytest.raises(ValueError, match=r"train-labels-idx1-ubyte\.gz: labels must be "
                                            r"classes 0-9, found 12"):
        idx.read_idx_split(str(tmp_path), "train")
    raw = tmp_path / "raw"
    raw.write_bytes(gzip.decompress((tmp_path / "train-images-idx3-ubyte.gz").read_bytes())[:50])
    with pytest.raises(ValueError, match=r"raw is truncated"):
        idx.read_idx(str(raw))
    header_only = tmp_path / "header"
    header_only.write_bytes(b"\x00\x00\x08\x03\x00\x00")
    with pytest.raises(ValueError, match=r"header is truncated"):
        idx.read_idx(str(header_only))
    not_gzip = tmp_path / "bad.gz"
    not_gzip.write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x01\x05")
    with pytest.raises(ValueError, match=r"bad\.gz is not a valid gzip file"):
        idx.read_idx(str(not_gzip))


@pytest.mark.parametrize("dataset", ["mnist", "fashion_mnist", "stacked_mnist"])
@pytest.mark.parametrize("model", ["mlp", "mlp_large", "dcgan"])
def test_every_dataset_and_model_value_is_a_valid_training_config(tmp_path, dataset, model):
    from conftest import tiny_config

    tiny_config(tmp_path, None, dataset=dataset, model=model).validate()
