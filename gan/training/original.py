"""The original script's training loop, kept as the speed and behaviour baseline.

Keras `compile` + `train_on_batch` + `predict`, as `main.py` did, with its one bug fixed
(it flattened the real images to 784-vectors before concatenating them with 28x28 fakes).
Used by `python -m gan.bench`; not used for training.
"""

import keras
import numpy as np

from gan.models import networks as models


class OriginalLoop:
    """The original GAN: G, D, and the combined G->frozen D model, each compiled with
    Adam defaults and binary cross-entropy."""

    def __init__(self, noise_dim=100, seed=0):
        keras.utils.set_random_seed(seed)
        self.noise_dim = noise_dim
        self.rng = np.random.default_rng(seed)
        self.generator = models.build_mlp_generator(noise_dim)
        self.discriminator = models.build_mlp_discriminator()
        self.discriminator.compile(optimizer=keras.optimizers.Adam(), loss="binary_crossentropy")
        self.discriminator.trainable = False  # frozen inside the combined model only
        z = keras.Input((noise_dim,))
        self.combined = keras.Model(z, self.discriminator(self.generator(z)))
        self.combined.compile(optimizer=keras.optimizers.Adam(), loss="binary_crossentropy")

    def iteration(self, images, batch_size=32):
        """One iteration of the original loop on images [N, 28, 28] in [0, 1].
        Returns (d_loss, g_loss)."""
        noise = self.rng.normal(0, 1, (batch_size, self.noise_dim))
        fake = self.generator.predict(noise, verbose=0)
        real = images[self.rng.integers(0, images.shape[0], batch_size)]
        x = np.concatenate([real, fake])
        y = np.concatenate([np.ones((batch_size, 1)), np.zeros((batch_size, 1))])
        self.discriminator.trainable = True
        d_loss = self.discriminator.train_on_batch(x, y)
        self.discriminator.trainable = False
        noise = self.rng.normal(0, 1, (batch_size, self.noise_dim))
        g_loss = self.combined.train_on_batch(noise, np.ones((batch_size, 1)))
        return float(np.asarray(d_loss).ravel()[0]), float(np.asarray(g_loss).ravel()[0])
