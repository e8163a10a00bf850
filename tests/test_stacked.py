"""Stacked MNIST (gan.datasets.stacked) and PacGAN's packing (--pack): stream, models, step,
evaluation and a whole tiny run."""

import json
import math
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import run_cli_cases, tiny_config
from gan import config as config_lib
from gan import datasets
from gan.datasets import stacked
from gan.evaluation import evaluator as eval_lib
from gan.models import networks as models, registry
from gan.training import run as train_lib
from gan.training import step as step_lib


def indexed_digits(n=50):
    """Images whose pixels all equal their index (uint8 [n, 28, 28]) and labels index % 10,
    so a stacked image tells which digits it was made of."""
    images = np.arange(n, dtype=np.uint8)[:, None, None].repeat(28, 1).repeat(28, 2)
    return images, np.arange(n, dtype=np.int32) % 10


def stream(seed, start_step, steps, batch=8, n=50):
    """(channel indices int [steps, batch, 3], labels [steps, batch]) of the stream."""
    images, labels = indexed_digits(n)
    ds = stacked.make_batches(images, labels, batch, seed, start_step, steps_per_element=1)
    xs, ys = zip(*[(x.numpy()[0], y.numpy()[0]) for x, y in ds.take(steps)])
    indices = np.rint(np.stack(xs)[:, :, 0, 0, :] * 255).astype(int)  # one pixel per channel
    return indices, np.stack(ys)


def test_stream_shapes_and_labels_are_the_channels_digits():
    images, labels = indexed_digits()
    x, y = next(iter(stacked.make_batches(images, labels, 8, 0, steps_per_element=4)))
    assert x.shape == (4, 8, 28, 28, 3) and x.dtype == tf.float32 and y.shape == (4, 8)
    indices, labels_seen = stream(0, 0, 10)
    digits = labels[indices]  # [steps, B, 3]
    assert np.array_equal(labels_seen, 100 * digits[..., 0] + 10 * digits[..., 1] + digits[..., 2])
    # The three channels are drawn independently, not the same digit three times.
    assert np.mean(indices[..., 0] == indices[..., 1]) < 0.2


def test_stream_is_a_function_of_seed_and_step_so_resume_sees_the_same_batches():
    full, full_labels = stream(seed=5, start_step=0, steps=20)
    resumed, resumed_labels = stream(seed=5, start_step=13, steps=7)
    assert np.array_equal(full[13:], resumed) and np.array_equal(full_labels[13:], resumed_labels)
    assert np.array_equal(full, stream(seed=5, start_step=0, steps=20)[0])
    assert not np.array_equal(full, stream(seed=6, start_step=0, steps=20)[0])
    # Each channel goes through every digit once per epoch (50 digits = 6.25 steps of 8).
    assert sorted(full[:6, :, 2].ravel().tolist() + full[6, :2, 2].tolist()) == list(range(50))


@pytest.mark.parametrize("name", registry.NETWORKS)
def test_models_take_channels_and_packs(name):
    g = models.make_generator(name, 16, channels=3)
    images = g(tf.random.normal([4, 16]))
    assert images.shape == (4, 28, 28, 3)
    d = models.make_discriminator(name, channels=6)
    assert d(step_lib.pack(images, 2)).shape == (2, 1)
    # One channel: the MNIST models' shapes and sizes, as before.
    assert models.make_generator(name, 16)(tf.zeros([2, 16])).shape == (2, 28, 28)
    assert models.make_discriminator(name)(tf.zeros([2, 28, 28])).shape == (2, 1)


def test_original_models_keep_their_parameter_counts():
    assert models.make_generator("mlp").count_params() == 227_344
    assert models.make_discriminator("mlp").count_params() == 201_217


def test_pack_concatenates_consecutive_images_along_the_channels():
    x = tf.reshape(tf.range(6 * 28 * 28 * 3, dtype=tf.float32), [6, 28, 28, 3])
    packed = step_lib.pack(x, 3).numpy()
    assert packed.shape == (2, 28, 28, 9)
    for p in range(2):
        for j in range(3):
            assert np.array_equal(packed[p, ..., 3 * j:3 * j + 3], x.numpy()[3 * p + j])
    gray = step_lib.pack(tf.zeros([4, 28, 28]), 2)
    assert gray.shape == (2, 28, 28, 2)
    assert step_lib.pack(x, 1) is x


def test_real_packs_hold_only_real_images_and_fake_packs_only_fakes(monkeypatch):
    state = step_lib.create_state(config_lib.TrainConfig(dataset="stacked_mnist", pack=2,
                                                         model="dcgan", batch_size=8))
    seen = []
    call = models.call

    def recording_call(model, x, labels=None, training=False):
        if model is state.discriminator:
            seen.append(x.numpy())
        return call(model, x, labels, training)

    monkeypatch.setattr(models, "call", recording_call)
    step_lib.discriminator_step(state, tf.ones([8, 28, 28, 3]), tf.random.normal([8, 100]))
    step_lib.generator_step(state, tf.random.normal([8, 100]))
    d_input, g_input = seen
    assert d_input.shape == (8, 28, 28, 6)  # 4 real packs, then 4 fake packs
    assert np.all(d_input[:4] == 1.0)  # real images are all ones
    assert np.all(d_input[4:] < 1.0)  # the sigmoid's fakes never are
    assert g_input.shape == (4, 28, 28, 6) and np.all(g_input < 1.0)


def test_pack_is_recorded_in_the_architecture_only_when_set():
    assert "pack" not in json.loads(config_lib.TrainConfig().architecture())
    assert json.loads(config_lib.TrainConfig(pack=2).architecture())["pack"] == 2


@pytest.mark.parametrize("bad, flag", [
    (dict(pack=0), "--pack"),
    (dict(pack=3, batch_size=32), "--pack"),
    (dict(pack=2, loss="wgan-gp"), "--pack"),
    (dict(dataset="stacked_mnist", conditional=True), "--dataset=stacked_mnist"),
    (dict(dataset="stacked_mnist", clusters=10), "--conditional"),
])
def test_bad_pack_and_stacked_options_name_their_flag(bad, flag):
    with pytest.raises(ValueError, match=flag):
        config_lib.TrainConfig(**bad).validate()


def mode_metrics(triples):
    return eval_lib.mode_metrics(triples, "stacked_mnist")


def test_mode_metrics_known_answers():
    one = mode_metrics(np.full(26000, 345))
    assert one["modes_covered"] == 1 and one["kl"] == pytest.approx(math.log(1000))
    even = mode_metrics(np.tile(np.arange(1000), 26))
    assert even["modes_covered"] == 1000 and even["kl"] == pytest.approx(0.0, abs=1e-12)
    half = mode_metrics(np.arange(500))
    assert half["modes_covered"] == 500 and half["kl"] == pytest.approx(math.log(2))
    # The split of KL: one repeated triple is three uneven channels, no dependence; the
    # same random digit in all three channels is even channels, all dependence (2 ln 10).
    assert one["kl_channels"] == pytest.approx(3 * math.log(10))
    assert one["dependence"] == pytest.approx(0.0, abs=1e-9)
    same = mode_metrics(111 * np.tile(np.arange(10), 100))
    assert same["kl_channels"] == pytest.approx(0.0, abs=1e-9)
    assert same["dependence"] == pytest.approx(2 * math.log(10))
    # Digits 0..4 in channel a (uneven: ln 2), b and c independent and even.
    a, b, c = np.meshgrid(np.arange(5), np.arange(10), np.arange(10), indexing="ij")
    skewed = mode_metrics(stacked.triple_labels(np.stack([a, b, c], -1).reshape(-1, 3)))
    assert skewed["kl_channels"] == pytest.approx(math.log(2))
    assert skewed["dependence"] == pytest.approx(0.0, abs=1e-9)


def test_real_mnist_triples_cover_the_modes_and_one_repeated_triple_covers_one(
        real_mnist_dir):
    from gan.datasets import load as data

    images, labels = data.load_split("mnist", "train", real_mnist_dir)
    x, y = next(iter(stacked.make_batches(images, labels, 8000, seed=1)))
    x, y = x.numpy()[0], y.numpy()[0]
    triples = eval_lib.classify_modes(x, "stacked_mnist")
    assert np.mean(triples == y) > 0.95  # the classifier reads each channel's digit
    real, floor_8000 = eval_lib.evaluate(x, "stacked_mnist", real_mnist_dir)
    assert real["modes_covered"] >= 990 and floor_8000["num_samples"] == 8000
    repeated, _ = eval_lib.evaluate(np.repeat(x[:1], 1000, axis=0), "stacked_mnist",
                                    real_mnist_dir)
    assert repeated["modes_covered"] == 1
    assert repeated["kl"] == pytest.approx(math.log(1000))
    floor = eval_lib.mode_floor(26000, real_mnist_dir, "stacked_mnist")
    assert floor["modes_covered"] >= 990 and floor["kl"] < 0.05


def test_tiny_packed_run_on_stacked_mnist_writes_a_colour_strip(tmp_path, data_dir):
    config = tiny_config(
        tmp_path, data_dir, dataset="stacked_mnist", pack=2, model="dcgan", batch_size=8,
        epochs=3, save_every=2, checkpoint_every=3, steps_per_call=2, quiet=True,
        eval_every=3, eval_samples=50)
    lines = []
    state = train_lib.train(config, log=lines.append)
    assert int(state.step.numpy()) == 3
    assert state.discriminator(tf.zeros([1, 28, 28, 6])).shape == (1, 1)  # packs of 2 x RGB
    with Image.open(os.path.join(config.image_dir, "generated_2.png")) as strip:
        assert strip.mode == "RGB" and strip.size == (1000, 100)
        pixels = np.asarray(strip).astype(int)
    assert np.any(pixels[..., 0] != pixels[..., 1])  # colour, not gray
    assert any(line.startswith("eval at epoch 3") and "modes=" in line for line in lines)


def test_self_conditioning_on_stacked_mnist_takes_triples_of_channel_clusters():
    config = config_lib.TrainConfig(dataset="stacked_mnist", conditional=True, clusters=10,
                                    pack=2)
    config.validate()  # allowed: no digit label is used
    assert config.num_classes == 1000
    mnist, stacked_mnist = datasets.get("mnist"), datasets.get("stacked_mnist")
    assert mnist.label_count(10) == 10 and mnist.label_count() == 10
    assert stacked_mnist.label_count(3) == 27
    # The stream's labels in base K are the channels' cluster ids.
    images, _ = indexed_digits()
    clusters = np.arange(50, dtype=np.int32) % 3
    x, y = next(iter(stacked.make_batches(images, clusters, 8, 0, base=3)))
    indices = np.rint(x.numpy()[0, :, 0, 0, :] * 255).astype(int)  # [8, 3]
    k = clusters[indices]
    assert np.array_equal(y.numpy()[0], 9 * k[:, 0] + 3 * k[:, 1] + k[:, 2])
    # The triples' prior is the product of the channel prior: label 9a + 3b + c.
    prior = stacked.cluster_prior([0.5, 0.3, 0.2], 3)
    assert prior.shape == (27,) and prior.sum() == pytest.approx(1.0)
    assert prior[9 * 2 + 3 * 0 + 1] == pytest.approx(0.2 * 0.5 * 0.3)


def test_packed_conditional_discriminator_projects_every_label_of_a_pack():
    d = models.make_discriminator("mlp", conditional=True, num_classes=5, channels=2, pack=2)
    images = tf.random.uniform([3, 28, 28, 2])
    labels = tf.constant([[0, 1], [2, 3], [4, 0]])
    out = d([images, labels]).numpy()
    assert out.shape == (3, 1)
    for member in (0, 1):  # changing either member's label changes the pack's score
        changed = labels.numpy().copy()
        changed[:, member] = (changed[:, member] + 1) % 5
        assert not np.allclose(d([images, tf.constant(changed)]).numpy(), out)
    assert np.array_equal(step_lib.pack_labels(tf.range(6), 2).numpy(), [[0, 1], [2, 3], [4, 5]])


def test_channel_cluster_labels_are_embedded_digit_by_digit():
    digits = models.LabelDigits(3, 3)(tf.constant([0, 5, 26, 9]))
    assert digits.numpy().tolist() == [[0, 0, 0], [0, 1, 2], [2, 2, 2], [1, 0, 0]]
    config = config_lib.TrainConfig(dataset="stacked_mnist", conditional=True, clusters=30,
                                    pack=2, model="mlp")
    assert config.label_parts == 3 and config.num_classes == 27000
    state = step_lib.create_state(config)
    # One table of 30 rows per network, shared by the three channels: not 27,000 rows.
    for net in (state.generator, state.discriminator):
        (table,) = [w for w in net.weights if "embedding" in w.path]
        assert table.shape[0] == 30
    g = state.generator
    noise = tf.random.normal([1, 100])
    # Labels with the same cluster ids in other channels are other labels.
    a, b = (g([noise, tf.constant([label])]).numpy() for label in (1 * 900 + 2 * 30 + 3,
                                                                    3 * 900 + 2 * 30 + 1))
    assert not np.allclose(a, b)
    d = state.discriminator
    packs = tf.random.uniform([2, 28, 28, 6])
    assert d([packs, tf.constant([[0, 26999], [5, 7]])]).shape == (2, 1)
    with pytest.raises(ValueError, match="not 3 digits of one base"):
        models.make_generator("mlp", conditional=True, num_classes=10, label_parts=3)


def test_tiny_self_conditioned_packed_run_on_stacked_mnist_samples_by_the_prior(tmp_path,
                                                                                data_dir):
    from gan.models import inference
    from gan.training import checkpoints

    config = tiny_config(
        tmp_path, data_dir, dataset="stacked_mnist", pack=2, conditional=True, clusters=2,
        model="mlp", batch_size=8, epochs=2, save_every=2, checkpoint_every=2,
        steps_per_call=1, quiet=True)
    state = train_lib.train(config)
    assert int(state.step.numpy()) == 2
    prior = state.cluster_prior.numpy()
    assert prior.shape == (8,) and prior.sum() == pytest.approx(1.0)
    generator, architecture, step = checkpoints.restore_generator(str(tmp_path / "ckpt"))
    assert step == 2 and np.allclose(architecture["cluster_prior"], prior)
    labels = inference.sampling_labels(architecture, 800)
    assert set(labels.tolist()) <= set(range(8))
    # Each channel's 2 clusters in their shares exactly (the prior is the product of one
    # channel's shares), the channels drawn apart: the 8 tuples then by the prior, up to
    # the spread of independent draws.
    channel = prior.reshape(2, 2, 2).sum(axis=(1, 2))
    for ids in (labels // 4, labels // 2 % 2, labels % 2):
        assert np.allclose(np.bincount(ids, minlength=2) / 800, channel, atol=1 / 800 + 1e-6)
    spread = np.sqrt(prior * (1 - prior) / 800)
    assert np.all(np.abs(np.bincount(labels, minlength=8) / 800 - prior) <= 4 * spread + 1e-6)
    assert inference.generate(generator, tf.zeros([4, 100]), labels[:4]).shape == (4, 28, 28, 3)
    (judged,) = run_cli_cases("gan.evaluate", [[f"--checkpoint_dir={tmp_path / 'ckpt'}",
                                                "--num_samples=100", f"--data_dir={data_dir}"]])
    assert judged.returncode == 0, judged.stderr[-3000:]
    printed = json.loads(judged.stdout.strip().splitlines()[-1])
    assert printed["step"] == 2 and printed["generated"]["num_samples"] == 100
    assert "cluster_prior" not in printed["architecture"]  # 8 shares here, 1,000 for K=10


def test_evaluate_judges_a_stacked_npy_file_and_refuses_gray_images(tmp_path, data_dir,
                                                                     mnist_train):
    images, labels = mnist_train
    x = next(iter(stacked.make_batches(images, labels, 200, seed=0)))[0].numpy()[0]
    np.save(tmp_path / "stacked.npy", x)
    np.save(tmp_path / "gray.npy", x[..., 0])
    out = tmp_path / "r.json"
    common = ["--dataset=stacked_mnist", f"--data_dir={data_dir}"]
    good, gray = run_cli_cases("gan.evaluate", [
        [f"--images={tmp_path / 'stacked.npy'}", f"--json_out={out}", *common],
        [f"--images={tmp_path / 'gray.npy'}", *common]])
    assert good.returncode == 0, good.stderr[-3000:]
    printed = json.loads(out.read_text())
    assert printed["generated"] == mode_metrics(eval_lib.classify_modes(x, "stacked_mnist"))
    assert printed["real_floor"]["num_samples"] == 200 and "modes covered" in good.stdout
    assert gray.returncode == 2
    assert "expected images of shape [N, 28, 28, 3], got [200, 28, 28]" in gray.stderr
