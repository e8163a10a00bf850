import numpy as np
import pytest

from gan.models import networks as models, registry


def test_generator_matches_the_original_table():
    g = models.build_mlp_generator(100)
    assert [layer.count_params() for layer in g.layers] == [25856, 201488, 0]
    assert g.count_params() == 227344


def test_discriminator_matches_the_original_table():
    d = models.build_mlp_discriminator()
    assert [layer.count_params() for layer in d.layers] == [0, 200960, 257]
    assert d.count_params() == 201217


def test_shapes_and_ranges():
    g, d = models.build_mlp_generator(100), models.build_mlp_discriminator()
    images = g(np.random.default_rng(0).normal(size=(5, 100)).astype("float32")).numpy()
    assert images.shape == (5, 28, 28)
    assert images.min() >= 0.0 and images.max() <= 1.0
    p = d(images).numpy()
    assert p.shape == (5, 1)
    assert ((p >= 0) & (p <= 1)).all()


@pytest.mark.parametrize("noise_dim", [2, 64])
def test_noise_size_is_configurable(noise_dim):
    g = models.build_mlp_generator(noise_dim)
    assert g.inputs[0].shape[-1] == noise_dim


def test_build_generator_follows_the_architecture():
    g = models.build_generator({"model": "mlp", "noise_dim": 64, "dataset": "mnist"})
    assert g.inputs[0].shape[-1] == 64 and g.count_params() == models.build_mlp_generator(
        64).count_params()
    with pytest.raises(ValueError, match="unknown model 'resnet'"):
        models.build_generator({"model": "resnet", "noise_dim": 64})
    assert not models.is_conditional({"model": "mlp", "noise_dim": 100})
    g = models.build_generator({"model": "dcgan", "noise_dim": 100, "conditional": True})
    assert models.is_conditional({"model": "dcgan", "conditional": True}) and len(g.inputs) == 2


# --- models beyond the original -----------------------------------------------------------

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

LABELS = np.array([0, 3, 7, 9], "int32")


def _noise(n=4, dim=100, seed=0):
    return np.random.default_rng(seed).normal(size=(n, dim)).astype("float32")


@pytest.mark.parametrize("conditional", [False, True])
@pytest.mark.parametrize("name", registry.NETWORKS)
def test_every_model_maps_noise_to_images_and_images_to_one_output(name, conditional):
    g = models.make_generator(name, 100, conditional)
    d = models.make_discriminator(name, conditional)
    assert len(g.inputs) == len(d.inputs) == (2 if conditional else 1)
    labels = LABELS if conditional else None
    images = models.call(g, _noise(), labels).numpy()
    assert images.shape == (4, 28, 28)
    assert images.min() >= 0.0 and images.max() <= 1.0
    p = models.call(d, images, labels).numpy()
    assert p.shape == (4, 1) and ((p >= 0) & (p <= 1)).all()


@pytest.mark.parametrize("conditional", [False, True])
def test_score_discriminator_is_the_probability_one_without_its_sigmoid(conditional):
    labels = LABELS if conditional else None
    images = np.random.default_rng(1).uniform(size=(4, 28, 28)).astype("float32")
    outputs = []
    for probability_output in (True, False):
        keras.utils.set_random_seed(0)
        d = models.make_discriminator("dcgan", conditional, probability_output)
        outputs.append(models.call(d, images, labels).numpy())
    p, score = outputs
    np.testing.assert_allclose(p, 1 / (1 + np.exp(-score)), rtol=1e-5, atol=1e-6)


def test_conditional_generator_uses_the_label():
    g = models.make_generator("mlp", 100, conditional=True)
    z = np.repeat(_noise(1), 2, axis=0)
    images = models.call(g, z, np.array([1, 8], "int32")).numpy()
    assert not np.allclose(images[0], images[1])


def test_conditional_model_without_labels_is_an_error():
    g = models.make_generator("mlp", 100, conditional=True)
    with pytest.raises(ValueError, match="labels"):
        models.call(g, _noise())


def test_dcgan_has_the_dcgan_ingredients():
    g, d = models.make_generator("dcgan"), models.make_discriminator("dcgan")
    kinds = lambda m: {type(layer).__name__ for layer in m.layers}  # noqa: E731
    assert {"Conv2DTranspose", "BatchNormalization"} <= kinds(g)
    assert {"Conv2D", "LeakyReLU"} <= kinds(d) and "BatchNormalization" not in kinds(d)


def test_dcgan_feature_maps_follow_its_channels():
    # G: 7x7xc1 -> 14x14xc2 -> 28x28x1; D mirrors it (14x14xc2 -> 7x7xc1).
    c1, c2 = models.DCGAN_CHANNELS
    g, d = models.make_generator("dcgan"), models.make_discriminator("dcgan")
    maps = lambda m, kind: [layer.output.shape[1:] for layer in m.layers  # noqa: E731
                            if type(layer).__name__ == kind]
    assert maps(g, "Reshape")[0] == (7, 7, c1)
    assert maps(g, "Conv2DTranspose") == [(14, 14, c2), (28, 28, 1)]
    assert maps(d, "Conv2D") == [(14, 14, c2), (7, 7, c1)]


def test_spectral_norm_brings_each_layer_to_unit_spectral_norm():
    d = models.make_discriminator("mlp_large", probability_output=False, spectral_norm=True)
    images = tf.constant(np.random.default_rng(2).uniform(size=(4, 28, 28)), tf.float32)
    for _ in range(30):  # one power iteration per training-mode call
        d(images, training=True)
    wrapped = [layer for layer in d.layers if isinstance(layer, keras.layers.SpectralNormalization)]
    assert len(wrapped) == 3
    for layer in wrapped:
        sigma = np.linalg.svd(layer.layer.kernel.numpy(), compute_uv=False)[0]
        assert abs(sigma - 1.0) < 0.05, (layer.name, sigma)


def test_minibatch_stddev_appends_each_groups_spread_without_mixing_groups():
    x = np.zeros((8, 3), "float32")
    x[4:] = [[0, 0, 0], [2, 2, 2], [0, 0, 0], [2, 2, 2]]  # second group varies by +-1
    out = models.MinibatchStddev(4)(x).numpy()
    assert out.shape == (8, 4)
    np.testing.assert_array_equal(out[:, :3], x)
    np.testing.assert_allclose(out[:4, 3], 0.0, atol=1e-3)  # identical samples: no spread
    np.testing.assert_allclose(out[4:, 3], 1.0, rtol=1e-3)


def test_discriminator_with_minibatch_stddev_sees_the_batch():
    d = models.make_discriminator("mlp_large", minibatch_std=True)
    images = np.random.default_rng(0).uniform(size=(8, 28, 28)).astype("float32")
    varied = d(images).numpy()[:4]
    collapsed = d(np.repeat(images[:1], 8, axis=0)).numpy()[:4]
    alone = d(np.concatenate([images[:4], np.repeat(images[:1], 4, axis=0)])).numpy()[:4]
    np.testing.assert_allclose(alone, varied, rtol=1e-5)  # other groups do not matter
    assert not np.allclose(collapsed[0], varied[0])  # its own group's spread does
