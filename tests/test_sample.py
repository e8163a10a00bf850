"""`python -m gan.sample` as a user runs it."""

import numpy as np
import pytest
from PIL import Image

from conftest import generator_with, run_cli, run_cli_cases
from gan import images
from gan.models import inference

def expected_images(weights, num, seed, truncation=0.0):
    return inference.generate(generator_with(weights),
                              inference.sample_noise(num, 100, seed, truncation))


# The requests of the tests below, run as `python -m gan.sample` would run them, all in one
# process (run_cli_cases); "b" repeats "a" in a process of its own (run_cli).
REQUESTS = {
    "grid": ["--num=12", "--cols=4", "--seed=3", "--out={tmp}/grid.png"],
    "a": ["--num=7", "--npy", "--seed=3", "--out={tmp}/a.npy"],
    "c": ["--num=7", "--npy", "--seed=4", "--out={tmp}/c.npy"],
    "truncated": ["--num=7", "--npy", "--seed=3", "--truncation=0.7", "--out={tmp}/t.npy"],
}


@pytest.fixture(scope="module")
def sampled(tmp_path_factory, generator_checkpoint):
    """(output folder, {request: result}) of REQUESTS on generator_checkpoint."""
    folder, _ = generator_checkpoint
    tmp = tmp_path_factory.mktemp("sampled")
    argvs = [[f"--checkpoint_dir={folder}", *[arg.format(tmp=tmp) for arg in args]]
             for args in REQUESTS.values()]
    return tmp, dict(zip(REQUESTS, run_cli_cases("gan.sample", argvs)))


@pytest.mark.slow
def test_png_grid_of_the_checkpoints_digits(sampled, generator_checkpoint):
    _, weights = generator_checkpoint
    tmp, results = sampled
    result = results["grid"]
    assert result.returncode == 0, result.stderr[-3000:]
    assert "step-5 checkpoint" in result.stdout
    with Image.open(tmp / "grid.png") as im:
        assert im.mode == "L" and im.size == (4 * 30 + 2, 3 * 30 + 2)  # 28 px + 2 px gaps
        pixels = np.asarray(im).astype(int)
    expected = images.grid(inference.to_uint8(expected_images(weights, 12, 3)).numpy(), cols=4)
    assert np.abs(pixels - expected).max() <= 1


@pytest.mark.slow
def test_npy_is_repeatable_with_a_seed(tmp_path, sampled, generator_checkpoint):
    folder, weights = generator_checkpoint
    tmp, results = sampled
    assert results["a"].returncode == results["c"].returncode == 0, results["a"].stderr[-3000:]
    result = run_cli("gan.sample", f"--checkpoint_dir={folder}", "--num=7", "--npy",
                     "--seed=3", f"--out={tmp_path}/b.npy")  # another process, as a user
    assert result.returncode == 0, result.stderr[-3000:]
    a, b, c = np.load(tmp / "a.npy"), np.load(tmp_path / "b.npy"), np.load(tmp / "c.npy")
    assert a.shape == (7, 28, 28) and a.dtype == np.float32
    assert a.min() >= 0.0 and a.max() <= 1.0
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)
    np.testing.assert_allclose(a, expected_images(weights, 7, 3), atol=1e-5)


@pytest.fixture(scope="module")
def sampled_truncated_run(tmp_path_factory, truncated_checkpoint):
    """(output folder, {request: result}): a checkpoint of a run that samples at
    --truncation=0.7, sampled as the run says and with --truncation=0."""
    folder, _ = truncated_checkpoint
    tmp = tmp_path_factory.mktemp("sampled_truncated_run")
    requests = {"run's": [], "off": ["--truncation=0"]}
    argvs = [[f"--checkpoint_dir={folder}", "--num=7", "--npy", "--seed=3",
              f"--out={tmp}/{i}.npy", *args] for i, args in enumerate(requests.values())]
    return tmp, dict(zip(requests, run_cli_cases("gan.sample", argvs)))


@pytest.mark.slow
def test_a_run_is_sampled_at_its_own_truncation_unless_told(sampled_truncated_run,
                                                            truncated_checkpoint):
    _, weights = truncated_checkpoint
    tmp, results = sampled_truncated_run
    for result in results.values():
        assert result.returncode == 0, result.stderr[-3000:]
    assert "(seed 3, truncation 0.7)" in results["run's"].stdout
    np.testing.assert_allclose(np.load(tmp / "0.npy"), expected_images(weights, 7, 3, 0.7),
                               atol=1e-5)
    assert "(seed 3)" in results["off"].stdout
    np.testing.assert_allclose(np.load(tmp / "1.npy"), expected_images(weights, 7, 3),
                               atol=1e-5)


@pytest.mark.slow
def test_truncation_samples_the_truncated_noise(sampled, generator_checkpoint):
    _, weights = generator_checkpoint
    tmp, results = sampled
    assert results["truncated"].returncode == 0, results["truncated"].stderr[-3000:]
    truncated = np.load(tmp / "t.npy")
    np.testing.assert_allclose(truncated, expected_images(weights, 7, 3, 0.7), atol=1e-5)
    assert not np.allclose(truncated, expected_images(weights, 7, 3), atol=1e-3)


BAD_REQUESTS = [
    (["--digit=7"], "--digit=7: the checkpoint in"),
    (["--num=0"], "--num must be positive"),
    (["--npy", "--out={tmp}/x.png"], "--out={tmp}/x.png"),
    (["--truncation=-1"], "flag --truncation=-1.0: must be >= 0 (0 = off)"),
    (["--truncation=nan"], "flag --truncation=nan: must be >= 0 (0 = off)"),
    (["--digit=12"], "--digit must be 0-9, got 12"),
    (["--cols=0"], "--cols must be positive"),
]
for i, (args, _) in enumerate(BAD_REQUESTS):
    REQUESTS[f"bad{i}"] = ["--out={tmp}/x.png", *args]
REQUESTS["missing"] = ["--checkpoint_dir={tmp}/nothing", "--out={tmp}/s.png"]


@pytest.mark.slow
def test_bad_requests_exit_2_naming_the_flag(sampled):
    tmp, results = sampled
    for i, (args, message) in enumerate(BAD_REQUESTS):
        result = results[f"bad{i}"]
        assert result.returncode == 2, (args, result.stderr[-2000:])
        assert f"error: {message.format(tmp=tmp)}" in result.stderr, args
    assert not (tmp / "x.png").exists()


@pytest.mark.slow
def test_missing_checkpoint_folder_is_a_clear_error(sampled):
    tmp, results = sampled
    result = results["missing"]
    assert result.returncode == 2
    assert f"--checkpoint_dir={tmp}/nothing" in result.stderr
    assert "does not exist" in result.stderr
    assert not (tmp / "s.png").exists()
