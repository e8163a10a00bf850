"""Generator and discriminator networks.

`mlp` is the original script's architecture, layer for layer:
  generator:     z[100] -> Dense 256 ReLU -> Dense 784 sigmoid -> Reshape 28x28   (227,344 params)
  discriminator: x[28,28] -> Flatten -> Dense 256 ReLU -> Dense 1 sigmoid         (201,217 params)

Other models (`MODELS`): `mlp_large` (a deeper, wider MLP with LeakyReLU, sized for CPUs:
G z -> 256 -> 512 (batch norm) -> 784, D 784 -> 512 -> 256 -> 1, about 0.56M + 0.53M
parameters) and `dcgan`
(DCGAN-style, slimmed for 2 CPU cores: G z -> Dense 7x7x64 (batch norm, ReLU) -> transposed
convolution 4x4 stride 2 to 14x14x32 (batch norm, ReLU) -> to 28x28x1 sigmoid; D convolutions
4x4 stride 2 to 14x14x32 and 7x7x64 with LeakyReLU, no batch norm; about 0.36M + 0.04M
parameters; DCGAN_CHANNELS sets the two widths).

What the discriminator outputs depends on the loss it is trained with, and only on that:
with the BCE loss it ends in a sigmoid and outputs P(real) [B, 1], exactly as the original
(the BCE loss takes probabilities); with hinge or WGAN-GP it ends in a linear unit and outputs
an unbounded score ("critic") [B, 1], which those losses are defined on. `probability_output`
below selects this.

Conditional models (`conditional=True`) take the digit label as a second input, int32 [B]:
the generator concatenates a learned label embedding to the noise; the discriminator is a
projection discriminator (Miyato & Koyama 2018): score = w.h + embed(label).h on its
features h. Unconditional models are `keras.Sequential` (so the mlp layer table is the
original's); conditional ones are functional models with inputs [noise or images, labels].
"""

import keras

from gan.config import CHANNELS, label_count

IMAGE_SHAPE = (28, 28)  # one channel; C channels are [28, 28, C] (image_shape)
NUM_CLASSES = 10
LABEL_EMBEDDING = 32  # size of the generator's label embedding
MODELS = ("mlp", "mlp_large", "dcgan")
MINIBATCH_STD_GROUP = 4
DCGAN_CHANNELS = (64, 32)  # generator 7x7x64 -> 14x14x32 -> 28x28x1; D mirrors it


def _maybe_sn(layer, spectral_norm):
    """Wraps a Dense/Conv layer in Keras's SpectralNormalization when asked.

    Keras 3's wrapper, at each training-mode call, estimates the kernel's largest singular
    value sigma by one power iteration and stores W / sigma back into the kernel, so the
    optimizer updates the normalised weights (a projection onto sigma ~ 1 after every step).
    """
    return keras.layers.SpectralNormalization(layer) if spectral_norm else layer


class MinibatchStddev(keras.layers.Layer):
    """Appends to each sample's features [B, F] one more: the standard deviation of the
    features over its group of `group_size` consecutive samples, averaged over F (Karras et
    al. 2018). D can then see that a batch of fakes lacks variety, which fights mode
    collapse. Groups are consecutive, so D's one pass over [real; fake] never mixes real and
    fake images in a group: B must be a multiple of group_size. Output [B, F + 1]."""

    def __init__(self, group_size=4, **kwargs):
        super().__init__(**kwargs)
        self.group_size = group_size

    def call(self, x):
        groups = keras.ops.reshape(x, (-1, self.group_size, x.shape[-1]))  # [B/G, G, F]
        std = keras.ops.sqrt(keras.ops.var(groups, axis=1) + 1e-8)  # [B/G, F]
        per_group = keras.ops.mean(std, axis=1, keepdims=True)  # [B/G, 1]
        return keras.ops.concatenate(
            [x, keras.ops.repeat(per_group, self.group_size, axis=0)], axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] + 1)

    def get_config(self):
        return {**super().get_config(), "group_size": self.group_size}


def image_shape(channels=1):
    """Shape of one image: (28, 28) for one channel (the MNIST models'), else (28, 28, C)."""
    return IMAGE_SHAPE if channels == 1 else (*IMAGE_SHAPE, channels)


def _leaky():
    return keras.layers.LeakyReLU(negative_slope=0.2)


def _generator_trunk(model, channels=1):
    """Layers mapping the generator input [B, noise_dim (+ embedding)] to images
    [B, 28, 28] (channels 1) or [B, 28, 28, C]."""
    shape = image_shape(channels)
    if model == "mlp":
        return [keras.layers.Dense(256, activation="relu"),
                keras.layers.Dense(784 * channels, activation="sigmoid"),
                keras.layers.Reshape(shape)]
    if model == "mlp_large":
        # Batch norm on the wide layer, as in common MLP GANs: without it this G falls
        # behind D within a few thousand steps (D's loss -> 0).
        return [keras.layers.Dense(256), _leaky(),
                keras.layers.Dense(512, use_bias=False), keras.layers.BatchNormalization(),
                _leaky(),
                keras.layers.Dense(784 * channels, activation="sigmoid"),
                keras.layers.Reshape(shape)]
    if model == "dcgan":
        c1, c2 = DCGAN_CHANNELS
        return [
            keras.layers.Dense(7 * 7 * c1, use_bias=False),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.Reshape((7, 7, c1)),
            keras.layers.Conv2DTranspose(c2, 4, strides=2, padding="same", use_bias=False),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.Conv2DTranspose(channels, 4, strides=2, padding="same",
                                         activation="sigmoid"),
            keras.layers.Reshape(shape),
        ]
    raise ValueError(f"unknown model '{model}'; choose one of {', '.join(MODELS)}")


def _discriminator_trunk(model, spectral_norm, channels=1):
    """Layers mapping images [B, 28, 28] (channels 1) or [B, 28, 28, C] to features [B, F]."""
    sn = lambda layer: _maybe_sn(layer, spectral_norm)  # noqa: E731
    if model == "mlp":
        return [keras.layers.Flatten(), sn(keras.layers.Dense(256, activation="relu"))]
    if model == "mlp_large":
        return [keras.layers.Flatten(),
                sn(keras.layers.Dense(512)), _leaky(),
                sn(keras.layers.Dense(256)), _leaky()]
    if model == "dcgan":
        c1, c2 = DCGAN_CHANNELS
        return [
            keras.layers.Reshape((*IMAGE_SHAPE, channels)),
            sn(keras.layers.Conv2D(c2, 4, strides=2, padding="same")), _leaky(),  # 14x14
            sn(keras.layers.Conv2D(c1, 4, strides=2, padding="same")), _leaky(),  # 7x7
            keras.layers.Flatten(),
        ]
    raise ValueError(f"unknown model '{model}'; choose one of {', '.join(MODELS)}")


def make_generator(model="mlp", noise_dim=100, conditional=False, num_classes=NUM_CLASSES,
                   channels=1):
    """Generator: noise [B, noise_dim] (and labels int32 [B] in 0..num_classes-1 if
    conditional) -> images [B, 28, 28] in [0, 1] ([B, 28, 28, C] for channels C > 1)."""
    trunk = _generator_trunk(model, channels)
    if not conditional:
        return keras.Sequential([keras.Input((noise_dim,)), *trunk], name="generator")
    noise = keras.Input((noise_dim,), name="noise")
    labels = keras.Input((), dtype="int32", name="labels")
    x = keras.layers.Concatenate()(
        [noise, keras.layers.Embedding(num_classes, LABEL_EMBEDDING)(labels)])
    for layer in trunk:
        x = layer(x)
    return keras.Model([noise, labels], x, name="generator")


def make_discriminator(model="mlp", conditional=False, probability_output=True,
                        spectral_norm=False, minibatch_std=False, num_classes=NUM_CLASSES,
                        channels=1, pack=1):
    """Discriminator: images [B, 28, 28] (and labels int32 [B] in 0..num_classes-1 if
    conditional) -> [B, 1], P(real) if `probability_output` (for the BCE loss) else an
    unbounded score. channels C > 1: images [B, 28, 28, C] (with --pack=k, C = k x the
    images' channels: gan.step.pack).
    minibatch_std: a MinibatchStddev feature before the output (B a multiple of 4).
    Conditional with pack=k > 1: labels int32 [B, k], the labels of a pack's k samples, whose
    embeddings are averaged into the projection (gan.step.pack_labels)."""
    trunk = _discriminator_trunk(model, spectral_norm, channels)
    if minibatch_std:
        trunk.append(MinibatchStddev(MINIBATCH_STD_GROUP))
    activation = "sigmoid" if probability_output else None
    if not conditional:
        head = _maybe_sn(keras.layers.Dense(1, activation=activation), spectral_norm)
        return keras.Sequential([keras.Input(image_shape(channels)), *trunk, head],
                                name="discriminator")
    images = keras.Input(image_shape(channels), name="images")
    labels = keras.Input(() if pack == 1 else (pack,), dtype="int32", name="labels")
    h = images
    for layer in trunk:
        h = layer(h)
    embedded = keras.layers.Embedding(num_classes, h.shape[-1])(labels)  # [B, F] or [B, k, F]
    if pack > 1:
        embedded = keras.layers.GlobalAveragePooling1D()(embedded)  # [B, F]: the pack's mean
    # Projection: w.h + embed(label).h, both [B, 1].
    projection = keras.layers.Dot(axes=1)([embedded, h])
    linear = _maybe_sn(keras.layers.Dense(1), spectral_norm)(h)
    score = keras.layers.Add()([linear, projection])
    out = keras.layers.Activation(activation)(score) if activation else score
    return keras.Model([images, labels], out, name="discriminator")


def build_mlp_generator(noise_dim=100):
    """The original generator: noise [B, noise_dim] -> images [B, 28, 28] in [0, 1]."""
    return make_generator("mlp", noise_dim)


def build_mlp_discriminator():
    """The original discriminator: images [B, 28, 28] -> P(real) [B, 1]."""
    return make_discriminator("mlp")


def call(model, x, labels=None, training=False):
    """Calls a generator or discriminator on x, and on labels int32 [B] when given (the
    caller knows from the configuration whether the model is conditional). The output is
    float32 also for a model computing in float16 (mixed precision), so losses, images and
    the [real; fake] batch stay float32 (a no-op otherwise)."""
    if labels is not None:
        return keras.ops.cast(model([x, labels], training=training), "float32")
    return keras.ops.cast(model(x, training=training), "float32")


def build_generator(architecture):
    """The generator of a checkpoint's architecture (the dict of TrainConfig.architecture(),
    e.g. {"model": "mlp", "noise_dim": 100, ...}); raises ValueError for an unknown model."""
    model = architecture.get("model")
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r} in architecture {architecture}")
    return make_generator(model, architecture["noise_dim"], is_conditional(architecture),
                          label_count(architecture.get("dataset"), architecture.get("clusters")),
                          CHANNELS.get(architecture.get("dataset"), 1))


def is_conditional(architecture):
    """True if the architecture's generator takes a class label as well as noise."""
    return bool(architecture.get("conditional", False))
