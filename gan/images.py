"""Image files: the original's strip of generated digits, written atomically, off the training path."""

import os
import queue
import threading

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from gan.files import atomic_write  # noqa: F401  (re-exported: images.atomic_write)


class StripRenderer:
    """Draws images [N, 28, 28] in [0, 1] as the original did: one row, grayscale, axes off,
    on a figure of N x 1 inches at 100 dpi (1000 x 100 pixels for the default 10 digits).

    The figure is built once and only its pixel data changes per call (~20 ms a strip
    instead of ~160 ms); use one renderer per thread.
    """

    def __init__(self, num_images, dpi=100):
        self.num_images = num_images
        self.dpi = dpi
        self.figure = Figure(figsize=(num_images, 1), dpi=dpi)
        FigureCanvasAgg(self.figure)
        self.artists = []
        for i in range(num_images):
            ax = self.figure.add_subplot(1, num_images, i + 1)
            self.artists.append(ax.imshow(np.zeros((28, 28)), cmap="gray", vmin=0.0, vmax=1.0))
            ax.axis("off")

    def render(self, images):
        """uint8 grayscale pixels [100, 100 * N] of the strip."""
        images = np.asarray(images)
        if images.shape != (self.num_images, 28, 28):
            raise ValueError(f"expected {self.num_images} images of 28x28, got {images.shape}")
        for artist, image in zip(self.artists, images):
            artist.set_data(image)
        self.figure.canvas.draw()
        return np.asarray(self.figure.canvas.buffer_rgba())[..., 0].copy()

    def save(self, images, path):
        """Renders `images` and writes them to `path` as a PNG, atomically."""
        pixels = Image.fromarray(self.render(images), mode="L")
        atomic_write(path, lambda tmp: pixels.save(tmp, format="PNG"))


def save_strip(images, path):
    """One-off `StripRenderer(len(images)).save(images, path)`."""
    StripRenderer(len(images)).save(images, path)


def image_path(image_dir, epoch):
    """The original's name for the images of one epoch: <dir>/generated_<epoch>.png."""
    return os.path.join(image_dir, f"generated_{epoch}.png")


class BackgroundWriter:
    """Runs file-writing jobs on one worker thread so PNG encoding overlaps training.

    Jobs run in submission order; `close()` waits for all of them and re-raises the
    first error, so nothing is silently lost.
    """

    def __init__(self):
        self._jobs = queue.Queue()
        self._error = None
        self._thread = threading.Thread(target=self._work, daemon=True)
        self._thread.start()

    def _work(self):
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                if self._error is None:
                    job[0](*job[1:])
            except BaseException as e:  # reported by close()
                self._error = e

    def submit(self, fn, *args):
        self._jobs.put((fn, *args))

    def close(self):
        self._jobs.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
