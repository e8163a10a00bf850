"""gan.evaluation.evaluator and `python -m gan.evaluate`: known answers on real and font digits,
inputs, restore."""

import json
import os

import numpy as np
import pytest
from PIL import Image

import conftest
from conftest import run_cli, run_cli_cases
from gan.evaluation import evaluator as eval_lib
from gan.training import checkpoints, monitor, run as train_lib
from gan.config import TrainConfig

@pytest.fixture(scope="module")
def floor_2000(real_mnist_dir):
    return eval_lib.real_floor(2000, real_mnist_dir)


def test_real_mnist_training_digits_reach_the_floor_and_a_repeated_digit_does_not(
        real_mnist_dir, floor_2000):
    from gan.datasets import load as data

    images = data.load_split("mnist", "train", real_mnist_dir)[0]
    others = eval_lib.evaluate_images(images[-2000:], real_mnist_dir)  # not the floor's digits
    assert others["modes_covered"] == 10 and floor_2000["modes_covered"] == 10
    assert others["class_kl"] < 0.01
    assert others["classifier_score"] > 9.0
    assert others["precision"] > 0.6 and others["recall"] > 0.6

    one_digit = eval_lib.evaluate_images(np.repeat(images[:1], 2000, axis=0), real_mnist_dir)
    assert one_digit["modes_covered"] == 1
    assert one_digit["class_kl"] == pytest.approx(np.log(10), abs=1e-6)
    assert one_digit["classifier_score"] < 1.01
    assert one_digit["recall"] < 0.01
    # Another sample of real digits lands at the floor; the distances are on the scale of
    # the classifier's features, so they are judged against the collapsed set's.
    assert others["fd"] < 2 * floor_2000["fd"] and one_digit["fd"] > 100 * others["fd"]
    assert abs(others["kid"]) < 0.005 * one_digit["kid"]  # unbiased: ~0, either sign


def test_the_floor_is_cached_per_process_and_a_repeated_digit_lands_far_from_it(
        data_dir, mnist_train):
    """The same checks on the small data set of data_dir (font digits: the classifier calls
    most of them right, so all ten digits are present)."""
    floor = eval_lib.real_floor(300, data_dir)
    assert eval_lib.real_floor(300, data_dir) is floor
    assert floor["num_samples"] == 300 and floor["modes_covered"] == 10
    assert sum(floor["class_histogram"]) == pytest.approx(1.0, abs=1e-3)
    others = eval_lib.evaluate_images(mnist_train[0][-300:], data_dir)
    one_digit = eval_lib.evaluate_images(np.repeat(mnist_train[0][:1], 300, axis=0), data_dir)
    assert others["modes_covered"] == 10 and one_digit["modes_covered"] == 1
    assert one_digit["class_kl"] == pytest.approx(np.log(10), abs=1e-6)
    assert one_digit["recall"] < others["recall"] / 10
    assert one_digit["fd"] > 10 * others["fd"]


def test_load_images_from_npy_and_png_folder(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (12, 28, 28), dtype=np.uint8)
    np.save(tmp_path / "u8.npy", pixels)
    np.save(tmp_path / "f32.npy", pixels.astype(np.float32) / 255.0)
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i, image in enumerate(pixels):
        Image.fromarray(image, mode="L").save(folder / f"{i:03d}.png")
    for source in ("u8.npy", "f32.npy", "pngs"):
        loaded = eval_lib.load_images(str(tmp_path / source))
        assert loaded.dtype == np.float32 and loaded.shape == (12, 28, 28)
        assert np.allclose(loaded * 255.0, pixels, atol=1e-3), source


@pytest.mark.parametrize("make, message", [
    (lambda p: None, "does not exist"),
    (lambda p: np.save(p / "x.npy", np.zeros((12, 32, 32), np.uint8)), "[N, 28, 28]"),
    (lambda p: np.save(p / "x.npy", np.zeros((3, 28, 28), np.uint8)), "at least 10"),
    (lambda p: np.save(p / "x.npy", np.full((12, 28, 28), 255.0)), "[0, 1]"),
    (lambda p: (p / "x.npy").write_text("not an array"), "not a readable .npy"),
])
def test_bad_image_files_are_named(tmp_path, make, message):
    make(tmp_path)
    with pytest.raises(ValueError, match="--images=.*x.npy") as error:
        eval_lib.load_images(str(tmp_path / "x.npy"))
    assert message in str(error.value)


def test_bad_png_folders_are_named(tmp_path):
    with pytest.raises(ValueError, match="no .png files"):
        eval_lib.load_images(str(tmp_path))
    Image.new("L", (30, 28)).save(tmp_path / "big.png")
    with pytest.raises(ValueError, match="big.png is 30x28"):
        eval_lib.load_images(str(tmp_path))


def test_restore_generator_refuses_missing_and_empty_folders(tmp_path):
    with pytest.raises(checkpoints.CheckpointError, match="does not exist"):
        checkpoints.restore_generator(str(tmp_path / "none"))
    with pytest.raises(checkpoints.CheckpointError, match="holds no checkpoint"):
        checkpoints.restore_generator(str(tmp_path))


tiny_config = conftest.tiny_configs(epochs=40, checkpoint_every=20, save_every=20, seed=3)


def test_training_logs_evaluations_without_changing_the_run(tmp_path, data_dir):
    logs = []
    evaluated = train_lib.train(tiny_config(tmp_path / "a", data_dir, eval_every=15,
                                            eval_samples=200), log=logs.append)
    plain = train_lib.train(tiny_config(tmp_path / "b", data_dir), log=lambda s: None)
    lines = [line for line in logs if line.startswith("eval at epoch")]
    assert [line.split()[3] for line in lines] == ["15", "30"]
    assert "200 samples" in lines[0] and "modes=" in lines[0] and "recall=" in lines[0]
    history = monitor.read_history(str(tmp_path / "a" / "ckpt" / "logs" / "metrics.jsonl"))
    evals = [r for r in history if "eval/fd" in r]
    assert [r["step"] for r in evals] == [15, 30] and 0 <= evals[0]["eval/recall"] <= 1
    for x, y in zip(evaluated.generator.get_weights(), plain.generator.get_weights()):
        assert np.array_equal(x, y)  # sampling for evaluation never touches training noise

    generator, architecture, step = checkpoints.restore_generator(str(tmp_path / "a" / "ckpt"))
    assert step == 40 and architecture["model"] == "mlp"
    for x, y in zip(generator.get_weights(), evaluated.generator.get_weights()):
        assert np.array_equal(x, y)
    a, b = (eval_lib.sample_images(generator, 30, seed=1) for _ in range(2))
    assert a.shape == (30, 28, 28) and np.array_equal(a, b)


@pytest.mark.parametrize("overrides, flag", [
    (dict(eval_every=-1), "--eval_every"), (dict(eval_samples=5), "--eval_samples")])
def test_eval_flags_are_validated(tmp_path, overrides, flag):
    with pytest.raises(ValueError, match=flag):
        tiny_config(tmp_path, None, **overrides).validate()


def test_fashion_runs_may_evaluate_as_they_train(tmp_path):
    tiny_config(tmp_path, None, eval_every=10, dataset="fashion_mnist").validate()


@pytest.fixture(scope="module")
def fashion_test(fashion_data_dir):
    from gan.datasets import load as data

    return data.load_split("fashion_mnist", "test", fashion_data_dir)


@pytest.mark.slow  # and the command in a process of its own
def test_fashion_images_are_judged_by_the_fashion_classifier_real_fashion_mnist(
        tmp_path, fashion_data_dir, fashion_test):
    images, labels = fashion_test[0][:500], fashion_test[1][:500]
    judged = eval_lib.evaluate_images(images, fashion_data_dir, labels, dataset="fashion_mnist")
    # Asked for their true classes, real clothes are drawn as asked: the classifier is the
    # Fashion-MNIST one (the MNIST one calls most of them the wrong "digit").
    assert np.nanmean(judged["label_accuracy"]) >= 0.9 and min(judged["label_accuracy"]) > 0.6
    assert judged["modes_covered"] == 10 and judged["classifier_score"] > 8.0
    as_digits = eval_lib.evaluate_images(images, fashion_data_dir, labels, dataset="mnist")
    assert np.nanmean(as_digits["label_accuracy"]) < 0.5
    # The floor is real Fashion-MNIST training images against the Fashion-MNIST test split:
    # real against real, so realism and variety are high and other real images land at it.
    # (That it is not the MNIST floor: the training evaluation test below.)
    floor = eval_lib.real_floor(500, fashion_data_dir, dataset="fashion_mnist")
    assert floor["precision"] > 0.6 and floor["recall"] > 0.6
    assert judged["fd"] < 2 * floor["fd"]
    with pytest.raises(ValueError, match="--dataset must be one of .*, got 'cifar10'"):
        eval_lib.real_floor(500, fashion_data_dir, dataset="cifar10")
    # The command judges them the same way. (In this test, after the floors above: its
    # process reads the decoded Fashion-MNIST from the session's cache instead of decoding.)
    np.save(tmp_path / "clothes.npy", fashion_test[0][:300])
    result = run_cli("gan.evaluate", f"--images={tmp_path}/clothes.npy",
                     "--dataset=fashion_mnist", f"--data_dir={fashion_data_dir}", timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "against the Fashion-MNIST test split" in result.stdout
    assert "real images (300)" in result.stdout and "classes >= 2% of samples" in result.stdout
    printed = json.loads([x for x in result.stdout.splitlines() if x.startswith("{")][0])
    assert printed["dataset"] == "fashion_mnist"
    assert printed["generated"]["modes_covered"] == 10
    floor_300 = eval_lib.real_floor(300, fashion_data_dir, dataset="fashion_mnist")
    for key in ("fd", "classifier_score", "precision", "recall"):
        assert printed["real_floor"][key] == pytest.approx(floor_300[key], rel=1e-4), key


def test_training_evaluates_fashion_runs_with_the_fashion_classifier_real_fashion_mnist(
        tmp_path, fashion_data_dir):
    logs = []
    train_lib.train(tiny_config(tmp_path, fashion_data_dir, dataset="fashion_mnist", epochs=20,
                                eval_every=20, eval_samples=200), log=logs.append)
    line = [line for line in logs if line.startswith("eval at epoch 20")][0]
    fashion = eval_lib.real_floor(200, fashion_data_dir, dataset="fashion_mnist")
    mnist = eval_lib.real_floor(200, fashion_data_dir)
    # The bracketed floor of every figure is Fashion-MNIST's, not MNIST's.
    for key, name in (("fd", "fd"), ("precision", "precision"), ("recall", "recall")):
        shown = eval_lib.ROWS[key][1]
        assert f"{name}=" in line and f"[{shown.format(fashion[key])}]" in line
        assert f"[{shown.format(mnist[key])}]" not in line


def test_the_dataset_judged_is_the_checkpoints_unless_asked():
    fashion = {"model": "mlp", "dataset": "fashion_mnist"}
    assert eval_lib.resolve_dataset(None, fashion) == "fashion_mnist"
    assert eval_lib.resolve_dataset("fashion_mnist", fashion) == "fashion_mnist"
    assert eval_lib.resolve_dataset(None, {"model": "mlp"}) == "mnist"  # older checkpoints
    assert eval_lib.resolve_dataset(None) == "mnist"  # --images
    assert eval_lib.resolve_dataset("fashion_mnist") == "fashion_mnist"
    assert eval_lib.resolve_dataset(None, {"dataset": "stacked_mnist"}) == "stacked_mnist"
    with pytest.raises(ValueError, match="--dataset=mnist, but the generator was trained on "
                                         "fashion_mnist"):
        eval_lib.resolve_dataset("mnist", fashion)
    with pytest.raises(ValueError, match="--dataset must be one of .*, got 'cifar10'"):
        eval_lib.resolve_dataset("cifar10")


@pytest.mark.slow
def test_cli_evaluates_a_npy_file_and_writes_json(tmp_path, data_dir, mnist_train):
    np.save(tmp_path / "digits.npy", mnist_train[0][:300])
    out = tmp_path / "out" / "result.json"
    result = run_cli("gan.evaluate", f"--images={tmp_path}/digits.npy", f"--json_out={out}",
                     f"--data_dir={data_dir}", timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Fréchet distance" in result.stdout and "real digits (300)" in result.stdout
    line = [x for x in result.stdout.splitlines() if x.startswith("{")]
    assert len(line) == 1
    printed = json.loads(line[0])
    assert json.loads(out.read_text()) == printed
    assert printed["generated"]["num_samples"] == printed["real_floor"]["num_samples"] == 300
    assert printed["generated"]["modes_covered"] == 10
    assert os.listdir(out.parent) == ["result.json"]


@pytest.mark.slow
def test_a_run_is_judged_at_its_own_sampling_truncation_unless_told(
        tmp_path, data_dir, truncated_checkpoint):
    """A checkpoint of a run with --truncation=0.7: gan.evaluate draws its samples at 0.7
    (the same figures as asking for 0.7), and --truncation=0 turns it off."""
    folder, _ = truncated_checkpoint
    cases = {"run's": [], "asked": ["--truncation=0.7"], "off": ["--truncation=0"]}
    results = run_cli_cases("gan.evaluate", [
        [f"--checkpoint_dir={folder}", "--num_samples=200", f"--data_dir={data_dir}",
         f"--json_out={tmp_path}/{i}.json", *args] for i, args in enumerate(cases.values())])
    for result in results:
        assert result.returncode == 0, result.stderr[-3000:]
    runs, asked, off = (json.loads((tmp_path / f"{i}.json").read_text()) for i in range(3))
    assert runs["truncation"] == asked["truncation"] == 0.7 and off["truncation"] == 0.0
    assert runs["generated"] == asked["generated"]
    assert off["generated"]["fd"] != runs["generated"]["fd"]
    assert "truncation" not in runs["architecture"]  # how it is sampled, not what it is
    assert "(step 5, truncation 0.7)" in results[0].stdout


@pytest.mark.slow
def test_cli_refuses_bad_requests_clearly_before_evaluating(tmp_path, mnist_train):
    """An empty checkpoint folder, a negative truncation (before any sampling), a missing
    images file, an unknown --dataset, and a Fashion-MNIST generator asked to be judged as
    digits: exit 2 with a message naming the flag, and no --json_out written."""
    from gan.training import step as step_lib

    np.save(tmp_path / "digits.npy", mnist_train[0][:20])
    fashion = tmp_path / "fashion_ckpt"
    state = step_lib.create_state(TrainConfig(dataset="fashion_mnist"))
    checkpoints.make_manager(state, str(fashion), 1).save(checkpoint_number=1)
    out = tmp_path / "r.json"
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        ([f"--checkpoint_dir={empty}"],
         f"error: --checkpoint_dir={empty}: {empty} holds no checkpoint"),
        ([f"--checkpoint_dir={empty}", "--truncation=-0.5"],
         "error: flag --truncation=-0.5: must be >= 0 (0 = off)"),
        ([f"--checkpoint_dir={empty}", "--truncation=nan"],
         "error: flag --truncation=nan: must be >= 0 (0 = off)"),
        ([f"--images={tmp_path}/none.npy"], "none.npy does not exist"),
        ([f"--images={tmp_path}/digits.npy", "--dataset=cifar10"],
         "error: --dataset must be one of mnist, fashion_mnist, stacked_mnist, got 'cifar10'"),
        ([f"--checkpoint_dir={fashion}", "--dataset=mnist"],
         "error: --dataset=mnist, but the generator was trained on fashion_mnist"),
    ]
    results = run_cli_cases("gan.evaluate", [[*args, f"--json_out={out}"] for args, _ in cases])
    for (args, message), result in zip(cases, results):
        assert result.returncode == 2, (args, result.stderr[-2000:])
        assert message in result.stderr, args
    assert not out.exists()


def test_label_accuracy_is_per_asked_digit():
    from gan.evaluation import evaluator as eval_lib

    labels = np.array([0, 0, 0, 0, 1, 1, 2])
    predicted = np.array([0, 0, 0, 5, 1, 7, 2])
    probs = np.eye(10)[predicted]
    accuracy = eval_lib.label_accuracy(probs, labels)
    assert accuracy[:3] == [0.75, 0.5, 1.0]
    assert all(np.isnan(a) for a in accuracy[3:])  # never asked


def test_conditional_generators_are_asked_for_every_digit_equally():
    from gan.evaluation import evaluator as eval_lib
    from gan.models import inference, networks as models

    conditional = models.make_generator("mlp", 100, conditional=True)
    labels = inference.sampling_labels({"conditional": True}, 25)
    assert np.bincount(labels).tolist() == [3] * 5 + [2] * 5
    assert inference.sampling_labels({"conditional": False}, 25) is None
    # a --clusters generator: each cluster by its share of the training images
    prior = [0.5] + [0.5 / 29] * 29
    clustered = inference.sampling_labels({"conditional": True, "cluster_prior": prior}, 58)
    assert np.bincount(clustered).tolist() == [29] + [1] * 29
    images = eval_lib.sample_images(conditional, 25, labels=labels)
    assert images.shape == (25, 28, 28)


def test_the_reference_is_kept_on_disk_and_computed_again_when_damaged(
        tmp_path, monkeypatch, data_dir):
    from gan.datasets import load as data
    from gan.evaluation import classifier

    monkeypatch.setenv("GAN_CACHE_DIR", str(tmp_path))
    eval_lib._reference.cache_clear()  # this process's copy; the disk is the point here
    computed = eval_lib.reference(data_dir)
    (path,) = tmp_path.glob("reference-mnist-*.npz")

    def no_features(*args):
        raise AssertionError("computed again")

    real_features = classifier.features_and_probs
    monkeypatch.setattr(classifier, "features_and_probs", no_features)
    eval_lib._reference.cache_clear()  # as a new process
    loaded = eval_lib.reference(data_dir)
    for name in ("features", "mean", "cov", "radii", "label_accuracy"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(computed, name), name)

    path.write_bytes(path.read_bytes()[:100])  # cut short, as a crash could leave it
    monkeypatch.setattr(classifier, "features_and_probs", real_features)
    eval_lib._reference.cache_clear()
    again = eval_lib.reference(data_dir)
    np.testing.assert_array_equal(again.radii, computed.radii)
    with np.load(path) as f:  # written whole again
        np.testing.assert_array_equal(f["features"], computed.features)
    # Other test images (or weights) are another file, never a stale one.
    images, labels = data.load_split("mnist", "test", data_dir)
    assert eval_lib.reference_cache_path("mnist", images, labels) == str(path)
    assert eval_lib.reference_cache_path("mnist", images[:-1], labels[:-1]) != str(path)
    assert eval_lib.reference_cache_path("mnist", images, np.roll(labels, 1)) != str(path)
    assert eval_lib.reference_cache_path("fashion_mnist", images, labels) != str(path)
    # A file of an older Reference (without label_accuracy) is computed again, not trusted.
    with np.load(path) as f:
        older = {name: f[name] for name in f.files if name != "label_accuracy"}
    np.savez(path, **older)
    eval_lib._reference.cache_clear()
    np.testing.assert_array_equal(eval_lib.reference(data_dir).label_accuracy,
                                  computed.label_accuracy)
    with np.load(path) as f:
        assert "label_accuracy" in f.files
    eval_lib._reference.cache_clear()


def test_the_floor_of_class_accuracy_is_the_classifier_on_real_test_images(data_dir):
    from gan.datasets import load as data
    from gan.evaluation import classifier

    images, labels = data.load_split("mnist", "test", data_dir)
    predicted = np.argmax(classifier.features_and_probs(images / 255.0)[1], axis=1)
    expected = [np.mean(predicted[labels == d] == d) for d in range(10)]
    # Real training images asked for their own classes: the generated side is what the
    # classifier makes of them, the floor what it makes of the test split.
    train_images, train_labels = data.load_split("mnist", "train", data_dir)
    generated, floor = eval_lib.evaluate(train_images[:200], "mnist", data_dir,
                                         train_labels[:200])
    np.testing.assert_allclose(floor["label_accuracy"], expected, atol=5e-5)
    assert len(generated["label_accuracy"]) == 10
    assert "classifier right on real test digits, %:" in eval_lib.format_table(generated, floor)
    # Unconditional samples have no such bar, and the cached floor was not changed.
    _, plain = eval_lib.evaluate(train_images[:200], "mnist", data_dir)
    assert "label_accuracy" not in plain
    assert "classifier right" not in eval_lib.format_table(generated, plain)
