import numpy as np
import pytest

from gan import models


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
