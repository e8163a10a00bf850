"""Generator and discriminator networks.

`mlp` is the original script's architecture, layer for layer:
  generator:     z[100] -> Dense 256 ReLU -> Dense 784 sigmoid -> Reshape 28x28   (227,344 params)
  discriminator: x[28,28] -> Flatten -> Dense 256 ReLU -> Dense 1 sigmoid         (201,217 params)
The discriminator outputs a probability, as in the original; losses take it as such.
"""

import keras

IMAGE_SHAPE = (28, 28)


def build_mlp_generator(noise_dim=100):
    """The original generator: noise [B, noise_dim] -> images [B, 28, 28] in [0, 1]."""
    return keras.Sequential(
        [
            keras.Input((noise_dim,)),
            keras.layers.Dense(256, activation="relu"),
            keras.layers.Dense(784, activation="sigmoid"),
            keras.layers.Reshape(IMAGE_SHAPE),
        ],
        name="generator",
    )


def build_mlp_discriminator():
    """The original discriminator: images [B, 28, 28] -> P(real) [B, 1]."""
    return keras.Sequential(
        [
            keras.Input(IMAGE_SHAPE),
            keras.layers.Flatten(),
            keras.layers.Dense(256, activation="relu"),
            keras.layers.Dense(1, activation="sigmoid"),
        ],
        name="discriminator",
    )


def build_generator(architecture):
    """The generator of a checkpoint's architecture (the dict of TrainConfig.architecture(),
    e.g. {"model": "mlp", "noise_dim": 100, ...}); raises ValueError for an unknown model."""
    model = architecture.get("model")
    if model == "mlp":
        return build_mlp_generator(architecture["noise_dim"])
    raise ValueError(f"unknown model {model!r} in architecture {architecture}")


def is_conditional(architecture):
    """True if the architecture's generator takes a class label as well as noise."""
    return bool(architecture.get("conditional", False))
