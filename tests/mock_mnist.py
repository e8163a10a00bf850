"""A small MNIST-shaped data set for the tests, made from fonts: no download, no real MNIST.

Digits 0-9 are drawn with the DejaVu fonts that ship with matplotlib, rotated, fitted into
a 20x20 box and placed in a 28x28 image as MNIST's are (uint8, white on black, each image's
brightest pixel 255). The committed MNIST classifier calls most of them right, so the
evaluation code sees digit-like inputs. `prepare` writes them as a TFDS dataset with TFDS's
own MNIST builder (gan.datasets.idx.prepare_from_idx), the same layout `tfds.load` reads.
"""

import gzip
import os
import struct
from unittest import mock

import numpy as np

SIZES = {"train": 1200, "test": 400}
SEEDS = {"train": 0, "test": 1}
FONTS = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf",
         "DejaVuSansMono-Bold.ttf")


def digits(num, seed):
    """(images uint8 [num, 28, 28], labels uint8 [num]): font digits, a function of seed."""
    import matplotlib
    from PIL import Image, ImageDraw, ImageFont

    folder = os.path.join(matplotlib.get_data_path(), "fonts", "ttf")
    glyphs = {}  # (font, stroke, digit) -> 56x56 image of the digit, centred
    for name in FONTS:
        font = ImageFont.truetype(os.path.join(folder, name), 26)
        for stroke in (0, 1):
            for digit in range(10):
                canvas = Image.new("L", (56, 56))
                ImageDraw.Draw(canvas).text((28, 28), str(digit), fill=255, font=font,
                                            anchor="mm", stroke_width=stroke, stroke_fill=255)
                glyphs[name, stroke, digit] = canvas
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, num).astype(np.uint8)
    images = np.zeros((num, 28, 28), np.uint8)
    for i, label in enumerate(labels):
        glyph = glyphs[FONTS[rng.integers(len(FONTS))], int(rng.integers(2)), int(label)]
        glyph = glyph.rotate(rng.uniform(-15, 15), resample=Image.BILINEAR)
        glyph = glyph.crop(glyph.getbbox())
        width, height = glyph.size
        scale = 20 / max(width * 1.0, height)  # into a 20x20 box, as MNIST's digits
        width = max(1, round(width * scale * rng.uniform(0.8, 1.0)))
        glyph = glyph.resize((width, max(1, round(height * scale))), Image.LANCZOS)
        image = Image.new("L", (28, 28))
        shift = rng.integers(-1, 2, 2)
        image.paste(glyph, ((28 - glyph.size[0]) // 2 + int(shift[0]),
                            (28 - glyph.size[1]) // 2 + int(shift[1])))
        pixels = np.asarray(image, np.float32)
        images[i] = np.round(pixels * (255 / pixels.max()))
    return images, labels


def write_idx(path, array):
    """An unsigned-byte IDX file (gzip'd), the format of MNIST's distribution files."""
    header = struct.pack(f">BBBB{array.ndim}I", 0, 0, 8, array.ndim, *array.shape)
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(header + np.ascontiguousarray(array, np.uint8).tobytes())


def splits():
    """{split: (images, labels)} of the mock data set."""
    return {split: digits(SIZES[split], SEEDS[split]) for split in SIZES}


def prepare(data_dir, idx_dir, arrays):
    """Writes `arrays` ({split: (images, labels)}) as IDX files into idx_dir and prepares
    them as the TFDS dataset 'mnist' in data_dir, with gan.datasets.idx's offline path (its size
    check, the mnist Dataset's split_sizes, set to these sizes). Returns data_dir."""
    from gan.datasets import idx

    os.makedirs(idx_dir, exist_ok=True)
    for split, (images, labels) in arrays.items():
        image_stem, label_stem = idx.IDX_FILES[split]
        write_idx(os.path.join(idx_dir, image_stem + ".gz"), images)
        write_idx(os.path.join(idx_dir, label_stem + ".gz"), labels)
    with sized_mnist({split: len(labels) for split, (_, labels) in arrays.items()}):
        idx.prepare_from_idx(idx_dir, data_dir, "mnist")
    return data_dir


def sized_mnist(split_sizes):
    """A context in which the mnist Dataset (gan.datasets) has these split sizes
    ({split: N}): small IDX files then pass gan.datasets.idx's size check."""
    import dataclasses

    from gan import datasets

    return mock.patch.dict(datasets.DATASETS, mnist=dataclasses.replace(
        datasets.DATASETS["mnist"], split_sizes=split_sizes))
