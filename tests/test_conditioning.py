"""A class-conditional run learns its classes: asked for class d, it draws class d.

The data set is synthetic, so the class of a generated image can be judged here without a
classifier: class k is a bright horizontal band on rows 4 + 2k and 5 + 2k (k = 0..9) of a
dark 28x28 image. It is written as IDX files and prepared as the TFDS dataset "mnist" by
gan.datasets.idx (the same path as real MNIST), and `python -m gan.train --conditional` trains on
it for a few hundred iterations. Then, for each label d, the class judged from the band's
position must be d for at least 90% of the images, through the three ways a user gets
images: gan.models.inference.generate on the restored generator, the run's image strips (classes
0, 1, 2, ... in order) and `python -m gan.sample --digit`.

The recipe is WGAN-GP on the original's mlp networks, which learns every class of this data
well within the 500 iterations run; with BCE or hinge these small networks let D win early
and G draw one band for every label (mode collapse across labels, not a conditioning
failure: the projection D and label embedding are the same).
"""

import os
import struct

import numpy as np
import pytest
from PIL import Image

import mock_mnist
from conftest import run_cli, run_cli_cases
from gan.datasets import load as data, idx
from gan.models import inference
from gan.training import checkpoints

pytestmark = pytest.mark.slow  # a training run and a sampling run

TRAIN, TEST = 2000, 200
EPOCHS = 500
BAND_ROWS = 4 + 2 * np.arange(10)  # first row of class k's band


def band_images(labels, rng):
    """uint8 [N, 28, 28]: a band of rows 4 + 2k, 5 + 2k for label k (brightness 180-255,
    columns from 2-7 to 20-25) on faint noise (0-40)."""
    images = rng.uniform(0, 40, (len(labels), 28, 28))
    for image, label in zip(images, labels):
        left, right = rng.integers(2, 8), rng.integers(20, 26)
        image[BAND_ROWS[label]:BAND_ROWS[label] + 2, left:right] = rng.uniform(180, 255)
    return images.astype(np.uint8)


def judge(images):
    """The class of each image [N, 28, 28] (any scale): the band (pair of rows) with the most
    light."""
    rows = np.asarray(images, np.float64).mean(axis=2)  # [N, 28]
    return (rows[:, BAND_ROWS] + rows[:, BAND_ROWS + 1]).argmax(axis=1)


def share_right_per_class(images, labels):
    """{d: share of the images asked to be d that are judged d}."""
    judged, labels = judge(images), np.asarray(labels)
    return {d: float((judged[labels == d] == d).mean()) for d in np.unique(labels)}


def write_idx(path, array):
    """An unsigned-byte IDX file (the MNIST format) of `array`."""
    header = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def band_run(root, recipe=("--loss=wgan-gp",)):
    """Writes the band data set (as IDX files, prepared as TFDS "mnist" by gan.datasets.idx) under
    `root` and trains a conditional run on it with gan.train and the flags `recipe`: {"data",
    "images", "checkpoints", "train": (images, labels)}."""
    rng = np.random.default_rng(0)
    idx_dir = root / "idx"
    idx_dir.mkdir()
    splits = {}
    for split, size in (("train", TRAIN), ("test", TEST)):
        labels = rng.integers(0, 10, size)
        splits[split] = band_images(labels, rng), labels
        for stem, array in zip(idx.IDX_FILES[split], splits[split]):
            write_idx(idx_dir / stem, array)
    # The preparation expects MNIST's sizes; a small set prepares in seconds.
    with mock_mnist.sized_mnist({"train": TRAIN, "test": TEST}):
        idx.prepare_from_idx(str(idx_dir), str(root / "tfds"))
    run = {"data": str(root / "tfds"), "images": str(root / "img"),
           "checkpoints": str(root / "ckpt"), "train": splits["train"]}
    result = run_cli("gan.train", "--conditional", *recipe, "--batch_size=32",
                     f"--epochs={EPOCHS}", f"--save_every={EPOCHS - 1}",
                     f"--checkpoint_every={EPOCHS}", "--steps_per_call=50", "--noxla", "--quiet",
                     f"--data_dir={run['data']}", f"--image_dir={run['images']}",
                     f"--checkpoint_dir={run['checkpoints']}", timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return run


def check_the_judge_knows_the_training_data(run):
    images, labels = run["train"]
    assert (judge(images) == labels).all()
    # What gan.train trained on: the same images and labels (in TFDS's shuffled order).
    prepared, prepared_labels = data.load_split("mnist", "train", run["data"])
    assert prepared.shape == images.shape
    np.testing.assert_array_equal(judge(prepared), prepared_labels)
    np.testing.assert_array_equal(np.sort(prepared.reshape(TRAIN, -1).sum(axis=1)),
                                  np.sort(images.reshape(TRAIN, -1).sum(axis=1).astype(int)))


def check_generate(run):
    """gan.models.inference.generate on the restored (newest checkpoint's) generator, 100 images
    per label."""
    generator, architecture, step = checkpoints.restore_generator(run["checkpoints"])
    assert step == EPOCHS and architecture["conditional"]
    labels = np.arange(1000) % 10
    images = inference.generate(generator, inference.sample_noise(1000, 100, seed=5),
                                labels=labels)
    shares = share_right_per_class(images, labels)
    assert min(shares.values()) >= 0.9, f"generate: share judged as asked, per label: {shares}"


def strip_cells(path):
    """The digits of an image strip PNG (gan.images.StripRenderer: dark 28x28 images,
    upscaled, on a white figure), each resampled to [28, 28] in [0, 1], left to right."""
    pixels = np.asarray(Image.open(path).convert("L"), np.float64) / 255.0
    dark = pixels < 0.5  # every digit's top and bottom rows are dark, the figure is white
    columns = np.flatnonzero(dark.any(axis=0))
    runs = np.split(columns, np.flatnonzero(np.diff(columns) > 1) + 1)
    cells = []
    for run in runs:
        rows = np.flatnonzero(dark[:, run].any(axis=1))
        crop = pixels[rows[0]:rows[-1] + 1, run[0]:run[-1] + 1]
        cells.append(np.asarray(Image.fromarray(crop).resize((28, 28), Image.BOX)))
    return np.stack(cells)


def check_strips(run):
    """The strip after the last iteration shows classes 0..9 left to right (9 of 10 at
    least); the one after the first iteration does not."""
    strips = {int(name[len("generated_"):-len(".png")]): os.path.join(run["images"], name)
              for name in os.listdir(run["images"]) if name.endswith(".png")}
    assert sorted(strips) == [0, EPOCHS - 1]
    last = judge(strip_cells(strips[EPOCHS - 1]))
    assert len(last) == 10 and (last == np.arange(10)).sum() >= 9, f"last strip: {last}"
    # The judge is not fooled by any strip: after one iteration they are not in order.
    assert (judge(strip_cells(strips[0])) == np.arange(10)).sum() <= 4


def check_sample_digit(run, digits, folder):
    """`python -m gan.sample --digit=d` for each d of `digits` (one process: gan.sample's
    main with the flags as parsed from the command line): 100 images, 90% judged d."""
    outs = [folder / f"samples_{digit}.npy" for digit in digits]
    results = run_cli_cases("gan.sample", [
        [f"--checkpoint_dir={run['checkpoints']}", "--num=100", f"--digit={digit}", "--npy",
         "--seed=3", f"--out={out}"] for digit, out in zip(digits, outs)])
    for digit, out, result in zip(digits, outs, results):
        assert result.returncode == 0, result.stderr[-3000:]
        samples = np.load(out)
        assert samples.shape == (100, 28, 28)
        share = (judge(samples) == digit).mean()
        assert share >= 0.9, f"gan.sample --digit={digit}: {share:.0%} judged {digit}"


# One test, so that pytest-xdist cannot split its checks over two workers that would each
# train the run.
def test_a_conditional_run_draws_the_asked_class(tmp_path):
    run = band_run(tmp_path)
    check_the_judge_knows_the_training_data(run)
    check_generate(run)
    check_strips(run)
    check_sample_digit(run, (0, 9), tmp_path)  # the first and last band positions


def test_an_auxiliary_classifier_teaches_the_bce_networks_the_classes(tmp_path):
    """The module's recipe on BCE instead of WGAN-GP draws one band for every label (at this
    seed: band 9 for all); with --aux_classifier (AC-GAN) G is also trained to be read as
    the label asked of it, and draws the asked band for every label. (A weight of 1 is too
    weak here: D wins early and G draws band 0 for every label.)"""
    run = band_run(tmp_path, ("--loss=bce", "--aux_classifier=10"))
    check_generate(run)
