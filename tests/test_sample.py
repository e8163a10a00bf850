"""`python -m gan.sample` as a user runs it."""

import numpy as np
import pytest
from PIL import Image

from conftest import generator_with, run_cli, run_cli_cases
from gan import images, inference


def expected_images(weights, num, seed, truncation=0.0):
    return inference.generate(generator_with(weights),
                              inference.sample_noise(num, 100, seed, truncation))


@pytest.mark.slow
def test_png_grid_of_the_checkpoints_digits(tmp_path, generator_checkpoint):
    folder, weights = generator_checkpoint
    out = tmp_path / "grid.png"
    result = run_cli("gan.sample", f"--checkpoint_dir={folder}", "--num=12", "--cols=4",
                     "--seed=3", f"--out={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "step-5 checkpoint" in result.stdout
    with Image.open(out) as im:
        assert im.mode == "L" and im.size == (4 * 30 + 2, 3 * 30 + 2)  # 28 px + 2 px gaps
        pixels = np.asarray(im).astype(int)
    expected = images.grid(inference.to_uint8(expected_images(weights, 12, 3)).numpy(), cols=4)
    assert np.abs(pixels - expected).max() <= 1


@pytest.mark.slow
def test_npy_is_repeatable_with_a_seed(tmp_path, generator_checkpoint):
    folder, weights = generator_checkpoint
    arrays = []
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        result = run_cli("gan.sample", f"--checkpoint_dir={folder}", "--num=7", "--npy",
                         f"--seed={seed}", f"--out={tmp_path}/{name}.npy")
        assert result.returncode == 0, result.stderr[-3000:]
        arrays.append(np.load(tmp_path / f"{name}.npy"))
    a, b, c = arrays
    assert a.shape == (7, 28, 28) and a.dtype == np.float32
    assert a.min() >= 0.0 and a.max() <= 1.0
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)
    np.testing.assert_allclose(a, expected_images(weights, 7, 3), atol=1e-5)


@pytest.mark.slow
def test_truncation_samples_the_truncated_noise(tmp_path, generator_checkpoint):
    folder, weights = generator_checkpoint
    result = run_cli("gan.sample", f"--checkpoint_dir={folder}", "--num=7", "--npy",
                     "--seed=3", "--truncation=0.7", f"--out={tmp_path}/t.npy")
    assert result.returncode == 0, result.stderr[-3000:]
    truncated = np.load(tmp_path / "t.npy")
    np.testing.assert_allclose(truncated, expected_images(weights, 7, 3, 0.7), atol=1e-5)
    assert not np.allclose(truncated, expected_images(weights, 7, 3), atol=1e-3)


BAD_REQUESTS = [
    (["--digit=7"], "--digit=7: the checkpoint in"),
    (["--num=0"], "--num must be positive"),
    (["--npy", "--out={tmp}/x.png"], "--out={tmp}/x.png"),
    (["--truncation=-1"], "--truncation must be >= 0"),
    (["--digit=12"], "--digit must be 0-9, got 12"),
    (["--cols=0"], "--cols must be positive"),
]


@pytest.mark.slow
def test_bad_requests_exit_2_naming_the_flag(tmp_path, generator_checkpoint):
    folder, _ = generator_checkpoint
    cases = [[f"--checkpoint_dir={folder}", f"--out={tmp_path}/x.png",
              *[arg.format(tmp=tmp_path) for arg in args]] for args, _ in BAD_REQUESTS]
    for (args, message), result in zip(BAD_REQUESTS, run_cli_cases("gan.sample", cases)):
        assert result.returncode == 2, (args, result.stderr[-2000:])
        assert f"error: {message.format(tmp=tmp_path)}" in result.stderr, args
    assert not (tmp_path / "x.png").exists()


@pytest.mark.slow
def test_missing_checkpoint_folder_is_a_clear_error(tmp_path):
    result = run_cli("gan.sample", f"--checkpoint_dir={tmp_path}/nothing",
                     f"--out={tmp_path}/s.png", timeout=120)
    assert result.returncode == 2
    assert f"--checkpoint_dir={tmp_path}/nothing" in result.stderr
    assert "does not exist" in result.stderr
    assert not (tmp_path / "s.png").exists()
