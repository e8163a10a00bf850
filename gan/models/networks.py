"""Generator and discriminator networks.

`mlp` is the original script's architecture, layer for layer:
  generator:     z[100] -> Dense 256 ReLU -> Dense 784 sigmoid -> Reshape 28x28   (227,344 params)
  discriminator: x[28,28] -> Flatten -> Dense 256 ReLU -> Dense 1 sigmoid         (201,217 params)

Other models (gan.models.registry.NETWORKS): `mlp_large` (a deeper, wider MLP with LeakyReLU,
sized for CPUs: G z -> 256 -> 512 (batch norm) -> 784, D 784 -> 512 -> 256 -> 1, about
0.56M + 0.53M parameters) and `dcgan`
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

import dataclasses

import keras

from gan import datasets
from gan.models import registry

# [H, W] of every dataset's images (gan.datasets): the layers below are sized for 28x28.
IMAGE_SHAPE = datasets.MNIST.image_shape[:2]
PIXELS = IMAGE_SHAPE[0] * IMAGE_SHAPE[1]  # 784
NUM_CLASSES = datasets.MNIST.num_classes  # the default dataset's, for make_* called bare
LABEL_EMBEDDING = 32  # size of the generator's label embedding
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


def _batch_norm():
    # synchronized: under a tf.distribute strategy the batch statistics are those of the
    # global batch (all-reduced over replicas), so a mirrored run computes what one device
    # does. On one device the statistics are the same up to float rounding (Keras computes
    # the variance as E[x^2] - E[x]^2 on this path).
    return keras.layers.BatchNormalization(synchronized=True)


def _leaky():
    return keras.layers.LeakyReLU(negative_slope=0.2)


# --- the networks --model names (gan.models.registry.NETWORKS) ----------------------------------


@dataclasses.dataclass(frozen=True)
class Network:
    """A family of networks: the layers of its generator and of its discriminator.

    generator(channels): layers mapping the generator input [B, noise_dim (+ label
        embedding)] to images [B, 28, 28] in [0, 1] (channels 1) or [B, 28, 28, C].
    discriminator(spectral_norm, channels): layers mapping images [B, 28, 28] or
        [B, 28, 28, C] to features [B, F], each Dense/Conv wrapped by `_maybe_sn`.
    make_generator and make_discriminator add the label inputs and D's output head.
    """

    generator: object
    discriminator: object


def _mlp_generator(channels):
    return [keras.layers.Dense(256, activation="relu"),
            keras.layers.Dense(PIXELS * channels, activation="sigmoid"),
            keras.layers.Reshape(image_shape(channels))]


def _mlp_discriminator(spectral_norm, channels):
    return [keras.layers.Flatten(),
            _maybe_sn(keras.layers.Dense(256, activation="relu"), spectral_norm)]


def _mlp_large_generator(channels):
    # Batch norm on the wide layer, as in common MLP GANs: without it this G falls behind D
    # within a few thousand steps (D's loss -> 0).
    return [keras.layers.Dense(256), _leaky(),
            keras.layers.Dense(512, use_bias=False), _batch_norm(),
            _leaky(),
            keras.layers.Dense(PIXELS * channels, activation="sigmoid"),
            keras.layers.Reshape(image_shape(channels))]


def _mlp_large_discriminator(spectral_norm, channels):
    return [keras.layers.Flatten(),
            _maybe_sn(keras.layers.Dense(512), spectral_norm), _leaky(),
            _maybe_sn(keras.layers.Dense(256), spectral_norm), _leaky()]


def _dcgan_generator(channels):
    c1, c2 = DCGAN_CHANNELS
    return [
        keras.layers.Dense(7 * 7 * c1, use_bias=False),
        _batch_norm(),
        keras.layers.ReLU(),
        keras.layers.Reshape((7, 7, c1)),
        keras.layers.Conv2DTranspose(c2, 4, strides=2, padding="same", use_bias=False),
        _batch_norm(),
        keras.layers.ReLU(),
        keras.layers.Conv2DTranspose(channels, 4, strides=2, padding="same",
                                     activation="sigmoid"),
        keras.layers.Reshape(image_shape(channels)),
    ]


def _dcgan_discriminator(spectral_norm, channels):
    c1, c2 = DCGAN_CHANNELS
    return [
        keras.layers.Reshape((*IMAGE_SHAPE, channels)),
        _maybe_sn(keras.layers.Conv2D(c2, 4, strides=2, padding="same"), spectral_norm),
        _leaky(),  # 14x14
        _maybe_sn(keras.layers.Conv2D(c1, 4, strides=2, padding="same"), spectral_norm),
        _leaky(),  # 7x7
        keras.layers.Flatten(),
    ]


MLP = Network(_mlp_generator, _mlp_discriminator)
MLP_LARGE = Network(_mlp_large_generator, _mlp_large_discriminator)
DCGAN = Network(_dcgan_generator, _dcgan_discriminator)


class LabelDigits(keras.layers.Layer):
    """labels int32 [...] in 0..base**parts-1 -> their base-`base` digits int32 [..., parts],
    most significant first: a Stacked MNIST cluster label ka K^2 + kb K + kc -> (ka, kb, kc),
    one cluster id per channel (gan.datasets.stacked.triple_labels)."""

    def __init__(self, base, parts, **kwargs):
        super().__init__(**kwargs)
        self.base, self.parts = base, parts

    def call(self, labels):
        return keras.ops.stack([(labels // self.base ** (self.parts - 1 - i)) % self.base
                                for i in range(self.parts)], axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.parts)

    def get_config(self):
        return {**super().get_config(), "base": self.base, "parts": self.parts}


def _embed_labels(labels, num_classes, label_parts, size):
    """Embeddings of labels int32 [...]: [..., size] (label_parts 1), else the label's
    label_parts digits in base num_classes ** (1 / label_parts), each embedded by one shared
    table of that base: [..., label_parts, size]. The factored table is what makes
    Stacked MNIST's K^3 channel-cluster labels affordable (K = 30: 30 rows, not 27,000)."""
    if label_parts == 1:
        return keras.layers.Embedding(num_classes, size)(labels)
    base = round(num_classes ** (1 / label_parts))
    if base ** label_parts != num_classes:
        raise ValueError(f"{num_classes} labels are not {label_parts} digits of one base")
    return keras.layers.Embedding(base, size)(LabelDigits(base, label_parts)(labels))


def make_generator(model="mlp", noise_dim=100, conditional=False, num_classes=NUM_CLASSES,
                   channels=1, label_parts=1):
    """Generator: noise [B, noise_dim] (and labels int32 [B] in 0..num_classes-1 if
    conditional) -> images [B, 28, 28] in [0, 1] ([B, 28, 28, C] for channels C > 1).
    label_parts P > 1: each label is P digits (_embed_labels), their embeddings concatenated."""
    trunk = registry.network(model).generator(channels)
    if not conditional:
        return keras.Sequential([keras.Input((noise_dim,)), *trunk], name="generator")
    noise = keras.Input((noise_dim,), name="noise")
    labels = keras.Input((), dtype="int32", name="labels")
    embedded = _embed_labels(labels, num_classes, label_parts, LABEL_EMBEDDING)
    if label_parts > 1:
        embedded = keras.layers.Flatten()(embedded)  # [B, P * LABEL_EMBEDDING]
    x = keras.layers.Concatenate()([noise, embedded])
    for layer in trunk:
        x = layer(x)
    return keras.Model([noise, labels], x, name="generator")


def make_discriminator(model="mlp", conditional=False, probability_output=True,
                        spectral_norm=False, minibatch_std=False, num_classes=NUM_CLASSES,
                        channels=1, pack=1, label_parts=1, aux_classifier=False):
    """Discriminator: images [B, 28, 28] (and labels int32 [B] in 0..num_classes-1 if
    conditional) -> [B, 1], P(real) if `probability_output` (for the BCE loss) else an
    unbounded score. aux_classifier (conditional, pack 1; AC-GAN): [B, 1 + num_classes],
    that output followed by the logits of each image's label, a Dense head on D's features
    (split_auxiliary separates them). channels C > 1: images [B, 28, 28, C] (with
    --pack=k, C = k x the images' channels: gan.training.step.pack).
    minibatch_std: a MinibatchStddev feature before the output (B a multiple of 4).
    Conditional with pack=k > 1: labels int32 [B, k], the labels of a pack's k samples, whose
    embeddings are averaged into the projection (gan.training.step.pack_labels). label_parts P > 1:
    each label is P digits (_embed_labels), their embeddings averaged likewise."""
    trunk = registry.network(model).discriminator(spectral_norm, channels)
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
    features = h.shape[-1]
    # [B, F], [B, k, F], [B, P, F] or [B, k, P, F]: averaged over the pack and the digits
    embedded = _embed_labels(labels, num_classes, label_parts, features)
    if pack * label_parts > 1:
        embedded = keras.layers.Reshape((pack * label_parts, features))(embedded)
        embedded = keras.layers.GlobalAveragePooling1D()(embedded)  # [B, F]
    # Projection: w.h + embed(label).h, both [B, 1].
    projection = keras.layers.Dot(axes=1)([embedded, h])
    linear = _maybe_sn(keras.layers.Dense(1), spectral_norm)(h)
    score = keras.layers.Add()([linear, projection])
    out = keras.layers.Activation(activation)(score) if activation else score
    if aux_classifier:
        if pack != 1:
            raise ValueError("an auxiliary classifier judges single images, not packs")
        logits = keras.layers.Dense(num_classes, name="aux_logits")(h)  # [B, num_classes]
        out = keras.layers.Concatenate()([out, logits])
    return keras.Model([images, labels], out, name="discriminator")


def split_auxiliary(out, aux_classifier):
    """D's outputs [B, 1] (or [B, 1 + K] with an auxiliary classifier) -> (the [B, 1] output
    the GAN loss reads, the label logits [B, K] or None)."""
    if not aux_classifier:
        return out, None
    return out[:, :1], out[:, 1:]


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
    if model not in registry.NETWORKS:
        raise ValueError(f"unknown model {model!r} in architecture {architecture}")
    spec, clusters = datasets.of_architecture(architecture), architecture.get("clusters")
    return make_generator(model, architecture["noise_dim"], is_conditional(architecture),
                          architecture_label_count(architecture), spec.channels,
                          spec.label_parts(clusters))


def architecture_label_count(architecture):
    """How many labels the conditional networks of a checkpoint's architecture take
    (Dataset.label_count of its dataset and clusters)."""
    return datasets.of_architecture(architecture).label_count(architecture.get("clusters"))


def is_conditional(architecture):
    """True if the architecture's generator takes a class label as well as noise."""
    return bool(architecture.get("conditional", False))
