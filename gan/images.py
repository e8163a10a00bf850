"""Image files: the original's strip of generated digits, written atomically, off the training
path."""

import io
import math
import os
import queue
import re
import threading

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from gan import datasets, files


class StripRenderer:
    """Draws images [N, H, W] in [0, 1] as the original did: one row, grayscale, axes off,
    on a figure of N x 1 inches at 100 dpi (1000 x 100 pixels for the default 10 digits).
    image_shape: of one image, the dataset's (gan.datasets): [28, 28] for MNIST; [H, W, 3]
    images (Stacked MNIST's [28, 28, 3]) are drawn in colour (RGB) in the same layout.

    matplotlib lays the figure out once (public API: imshow, canvas.draw and each image's
    window extent); each strip is then painted into that layout with numpy, every digit
    scaled to its box by nearest neighbour (what imshow does when it enlarges an image
    3x or more). NaN pixels show the white background, as in matplotlib. Pixels equal
    matplotlib's own draw up to its resampling at the boxes' edges.
    """

    def __init__(self, num_images, dpi=100, image_shape=datasets.MNIST.image_shape):
        self.num_images, self.image_shape = num_images, tuple(image_shape)
        self.channels = image_shape[2] if len(image_shape) == 3 else 1
        image_height, image_width = image_shape[:2]
        figure = Figure(figsize=(num_images, 1), dpi=dpi)
        canvas = FigureCanvasAgg(figure)
        artists = []
        for i in range(num_images):
            ax = figure.add_subplot(1, num_images, i + 1)
            artists.append(ax.imshow(np.zeros((image_height, image_width)), cmap="gray",
                                     vmin=0.0, vmax=1.0))
            ax.axis("off")
        canvas.draw()
        self.background = np.asarray(canvas.buffer_rgba())[..., 0].copy()  # [H, W] uint8
        self.background[:] = self.background.max()  # the figure's (white) face
        height = self.background.shape[0]
        renderer = canvas.get_renderer()
        self.boxes = []  # per digit: rows and columns of the strip, and of the digit they show
        for artist in artists:
            extent = artist.get_window_extent(renderer)  # display pixels, origin bottom left
            top, bottom = round(height - extent.y1), round(height - extent.y0)
            left, right = round(extent.x0), round(extent.x1)
            rows = (np.arange(bottom - top) + 0.5) * image_height // (bottom - top)
            cols = (np.arange(right - left) + 0.5) * image_width // (right - left)
            self.boxes.append((slice(top, bottom), slice(left, right),
                               rows.astype(int)[:, None], cols.astype(int)[None, :]))

    def render(self, images):
        """uint8 pixels of the strip: grayscale [100, 100 * N], or RGB [100, 100 * N, 3] for
        3 channels."""
        images = np.asarray(images, np.float64)
        shape = (self.num_images, *self.image_shape)
        if images.shape != shape:
            size = "x".join(map(str, shape[1:]))  # 28x28, or 28x28x3
            raise ValueError(f"expected {self.num_images} images of {size}, got {images.shape}")
        pixels = self.background.copy()
        if self.channels > 1:
            pixels = np.repeat(pixels[..., np.newaxis], self.channels, axis=-1)
        face = float(self.background.flat[0])
        for (ys, xs, rows, cols), image in zip(self.boxes, images):
            scaled = image[rows, cols]
            pixels[ys, xs] = np.where(np.isnan(scaled), face,
                                      np.round(np.clip(np.nan_to_num(scaled), 0, 1) * 255))
        return pixels

    def save(self, images, path):
        """Renders `images` and writes them to `path` as a PNG, atomically."""
        save_png(self.render(images), path)


def save_strip(images, path):
    """One-off `StripRenderer(len(images)).save(images, path)`."""
    StripRenderer(len(images), image_shape=np.shape(images)[1:]).save(images, path)


def grid(images, cols=None, padding=2):
    """Tiles images [N, H, W] (or colour [N, H, W, C]) row by row into one picture
    [rows*(H+p)+p, cols*(W+p)+p] (and [..., C]) (p = padding, filled with zeros, as
    torchvision's make_grid), keeping the dtype. cols defaults to ceil(sqrt(N)), a
    near-square grid."""
    images = np.asarray(images)
    n, h, w = images.shape[:3]
    cols = cols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    out = np.zeros((rows * (h + padding) + padding, cols * (w + padding) + padding,
                    *images.shape[3:]), images.dtype)
    for i, image in enumerate(images):
        r, c = divmod(i, cols)
        y, x = padding + r * (h + padding), padding + c * (w + padding)
        out[y:y + h, x:x + w] = image
    return out


def save_png(pixels, path):
    """Writes uint8 pixels, grayscale [H, W] or RGB [H, W, 3], to `path` as a PNG, atomically
    (a full disk: files.DiskFullError with the PNG's size, the previous file kept)."""
    pixels = np.asarray(pixels, np.uint8)
    image = Image.fromarray(pixels, mode="L" if pixels.ndim == 2 else "RGB")
    buffer = io.BytesIO()  # encoded first, so a full disk's message knows the size
    # Level 1 of zlib: the same pixels (PNG is lossless) for a fraction of the CPU.
    image.save(buffer, format="PNG", compress_level=1)
    files.write_bytes(path, buffer.getvalue(), what="the image")


def save_gif(paths, out, frame_ms=200, last_frame_ms=2000):
    """Writes the images at `paths` as one looping animated GIF, one frame each in the given
    order, the last held longer; atomically, as save_png. (Pillow merges a frame identical to
    the one before it into that one.)"""
    if not paths:
        raise ValueError("no images to put in a GIF")
    frames = []
    for path in paths:
        with Image.open(path) as image:
            frames.append(image.convert("L" if image.mode == "L" else "RGB"))
    durations = [frame_ms] * (len(frames) - 1) + [last_frame_ms]
    buffer = io.BytesIO()  # encoded first, so a full disk's message knows the size
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:],
                   duration=durations, loop=0)
    files.write_bytes(out, buffer.getvalue(), what="the animated GIF")


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

    Jobs run in submission order. The first error a job raises (e.g. files.DiskFullError)
    stops the later jobs and is raised again by the next `submit()`, so the training loop
    stops at its next chunk instead of running on without its files, and by `close()`,
    which waits for all jobs: nothing is silently lost.
    """

    def __init__(self):
        self._jobs = queue.Queue()
        self._error = None
        self._thread = threading.Thread(target=self._work, daemon=True)
        self._thread.start()

    def _work(self):
        while True:
            job = self._jobs.get()
            try:
                if job is None:
                    return
                if self._error is None:
                    job[0](*job[1:])
            except BaseException as e:  # reported by submit(), wait() and close()
                self._error = e
            finally:
                self._jobs.task_done()

    def submit(self, fn, *args):
        if self._error is not None:
            raise self._error
        self._jobs.put((fn, *args))

    def wait(self):
        """Returns once every job submitted so far has run; raises the first job's error.
        (Before a checkpoint: no checkpoint may claim steps whose files were not written.)"""
        self._jobs.join()
        if self._error is not None:
            raise self._error

    def close(self, raised=None):
        """Waits for the submitted jobs; raises a job's error unless it is `raised` (the
        exception already on its way out of the `with` block)."""
        self._jobs.put(None)
        self._thread.join()
        if self._error is not None and self._error is not raised:
            raise self._error

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, traceback):
        self.close(raised=exc)
