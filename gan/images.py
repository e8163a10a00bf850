"""Image files: the original's strip of generated digits, written atomically, off the training path."""

import math
import os
import queue
import re
import threading

import numpy as np
from matplotlib import image as mimage
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from gan.files import atomic_write  # noqa: F401  (re-exported: images.atomic_write)


class StripRenderer:
    """Draws images [N, 28, 28] in [0, 1] as the original did: one row, grayscale, axes off,
    on a figure of N x 1 inches at 100 dpi (1000 x 100 pixels for the default 10 digits).

    The figure is built once and drawn in full for the first strip. Later strips of finite
    float pixels only have their digits drawn again, over the last ones (finite values
    make each digit an opaque block), and through the same matplotlib calls as
    `AxesImage.draw` minus the geometry it recomputes on every call, which is fixed here:
    ~3.5-5 ms a strip, against ~7-13 ms for redrawing the artists and ~14-20 ms for a full
    draw. Before its first use the short way is checked against the artists' way on a probe
    strip, and only kept if it gives the same pixels. Use one renderer per thread.
    """

    def __init__(self, num_images, dpi=100):
        self.num_images = num_images
        self.dpi = dpi
        self.figure = Figure(figsize=(num_images, 1), dpi=dpi)
        FigureCanvasAgg(self.figure)
        self._drawn = False
        self._layout = None  # per digit (artist, shape, transform, left, bottom); False: off
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
        canvas = self.figure.canvas
        if not (self._drawn and images.dtype.kind == "f" and np.isfinite(images).all()):
            # first strip, NaN/Inf pixels (transparent: the background must show), or a
            # non-float strip (the colormap would take integers as its own indices)
            for artist, image in zip(self.artists, images):
                artist.set_data(image)
            canvas.draw()
            self._drawn = True
            return self._pixels()
        renderer = canvas.get_renderer()
        if self._layout is None:  # first redraw
            try:
                self._layout = self._measure_layout(renderer)
                agrees = self._short_way_agrees(renderer)
            except (AttributeError, TypeError):  # a matplotlib without these internals
                agrees = False
            if not agrees:
                self._layout = False
        if not self._layout:
            return self._draw_artists(images, renderer)
        self._draw_digits(images, renderer)
        return self._pixels()

    def _draw_artists(self, images, renderer):
        for artist, image in zip(self.artists, images):
            artist.set_data(image)
            artist.draw(renderer)
        return self._pixels()

    def _short_way_agrees(self, renderer):
        """Draws a probe strip and then its negative the artists' way, and the probe again
        the short way over it: True if that gives the artists' pixels of the probe."""
        probe = np.random.default_rng(0).random((self.num_images, 28, 28))
        expected = self._draw_artists(probe, renderer)
        self._draw_artists(1 - probe, renderer)
        self._draw_digits(probe, renderer)
        return np.array_equal(self._pixels(), expected)

    def _pixels(self):
        return np.asarray(self.figure.canvas.buffer_rgba())[..., 0].copy()

    def _measure_layout(self, renderer):
        """Where each artist puts its image on this figure: its resampled shape, transform
        and lower-left corner, as its make_image computes them for any data."""
        magnification = renderer.get_image_magnification()
        layout = []
        for artist in self.artists:
            pixels, left, bottom, transform = artist.make_image(renderer, magnification)
            # frozen: the same matrix, not recomputed through the transform tree each time
            layout.append((artist, pixels.shape[:2], transform.frozen(), left, bottom))
        return layout

    def _draw_digits(self, images, renderer):
        """Each artist's draw() for finite float `images` at the measured layout: the
        colormap (vmin 0 and vmax 1 leave the values as they are), matplotlib's own
        resampling of RGBA images, its un-premultiplying and RGBA bytes, the Agg draw."""
        colors = self.artists[0].cmap(images)  # RGBA [N, 28, 28, 4]; all share "gray"
        for (artist, shape, transform, left, bottom), rgba in zip(self._layout, colors):
            resampled = mimage._resample(artist, rgba, shape, transform)
            alpha = resampled[..., 3].copy()
            resampled /= np.where(alpha != 0, alpha, 1)[..., None]
            resampled[..., 3] = alpha
            pixels = artist.to_rgba(resampled, bytes=True, norm=False)
            gc = renderer.new_gc()
            artist._set_gc_clip(gc)
            gc.set_alpha(artist._get_scalar_alpha())
            renderer.draw_image(gc, left, bottom, pixels)
            gc.restore()

    def save(self, images, path):
        """Renders `images` and writes them to `path` as a PNG, atomically."""
        save_png(self.render(images), path)


def save_strip(images, path):
    """One-off `StripRenderer(len(images)).save(images, path)`."""
    StripRenderer(len(images)).save(images, path)


def grid(images, cols=None, padding=2):
    """Tiles images [N, H, W] row by row into one picture [rows*(H+p)+p, cols*(W+p)+p]
    (p = padding, filled with zeros, as torchvision's make_grid), keeping the dtype.
    cols defaults to ceil(sqrt(N)), a near-square grid."""
    images = np.asarray(images)
    n, h, w = images.shape
    cols = cols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    out = np.zeros((rows * (h + padding) + padding, cols * (w + padding) + padding), images.dtype)
    for i, image in enumerate(images):
        r, c = divmod(i, cols)
        y, x = padding + r * (h + padding), padding + c * (w + padding)
        out[y:y + h, x:x + w] = image
    return out


def save_png(pixels, path):
    """Writes uint8 grayscale pixels [H, W] to `path` as a PNG, atomically."""
    image = Image.fromarray(np.asarray(pixels, np.uint8), mode="L")
    # Level 1 of zlib: the same pixels (PNG is lossless) in ~1 ms instead of ~8 ms a strip.
    atomic_write(path, lambda tmp: image.save(tmp, format="PNG", compress_level=1))


def save_gif(paths, out, frame_ms=200, last_frame_ms=2000):
    """Writes the images at `paths` as one looping animated GIF, one frame each in the given
    order, the last held longer; atomically. (Pillow merges a frame identical to the one
    before it into that one.)"""
    if not paths:
        raise ValueError("no images to put in a GIF")
    frames = []
    for path in paths:
        with Image.open(path) as image:
            frames.append(image.convert("L"))
    durations = [frame_ms] * (len(frames) - 1) + [last_frame_ms]
    atomic_write(out, lambda tmp: frames[0].save(
        tmp, format="GIF", save_all=True, append_images=frames[1:], duration=durations, loop=0))


def image_path(image_dir, epoch):
    """The original's name for the images of one epoch: <dir>/generated_<epoch>.png."""
    return os.path.join(image_dir, f"generated_{epoch}.png")


def list_strips(image_dir):
    """[(epoch, path)] of the generated_<epoch>.png files in image_dir, by epoch."""
    found = []
    for name in os.listdir(image_dir) if os.path.isdir(image_dir) else []:
        match = re.fullmatch(r"generated_(\d+)\.png", name)
        if match:
            found.append((int(match.group(1)), os.path.join(image_dir, name)))
    return sorted(found)


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
