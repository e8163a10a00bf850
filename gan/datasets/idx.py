"""Preparing the TFDS MNIST-like datasets offline from their four IDX files
(`python -m gan.data --prepare_from=DIR`)."""

import gzip
import os
import shutil
import struct
import tempfile
import zlib

import numpy as np

from gan import datasets
from gan.files import resolve_data_dir

# split -> its (images, labels) files, as MNIST and its look-alikes are distributed
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path):
    """Reads an IDX file (gzip'd or not) into a uint8 array; raises ValueError naming the file
    and what is wrong with it if it is unreadable, cut short or malformed."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except EOFError:  # gzip: the compressed stream ends before its end marker
        raise ValueError(f"{path} is truncated: its gzip stream ends early") from None
    except (gzip.BadGzipFile, zlib.error) as e:
        raise ValueError(f"{path} is not a valid gzip file ({e})") from None
    except OSError as e:
        raise ValueError(f"{path} cannot be read: {e.strerror or e}") from None
    if len(data) < 4 or data[0:2] != b"\x00\x00" or data[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        raise ValueError(f"{path} is truncated: it ends inside its {ndim}-dimension header")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise ValueError(f"{path} is truncated: header says {shape}, found {body.size} bytes")
    return body.reshape(shape)


def find_idx_file(folder, stem):
    for candidate in (stem, stem + ".gz"):
        path = os.path.join(folder, candidate)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"{stem}[.gz] not found in {folder}")


def read_idx_split(folder, split, name="mnist"):
    """(images [N, H, W], labels [N]) of one split of dataset `name` (its Dataset's
    image_shape, split_sizes and classes: 28x28, 60,000 and 10,000, 10) from the IDX files
    in `folder`; raises ValueError naming the file whose shape, count or labels are not
    those of the split."""
    spec = datasets.get(name)
    size, shape = spec.split_sizes[split], spec.image_shape
    image_stem, label_stem = IDX_FILES[split]
    image_path, label_path = find_idx_file(folder, image_stem), find_idx_file(folder, label_stem)
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.ndim != 3 or images.shape[1:] != shape:
        raise ValueError(f"{image_path}: expected N x {' x '.join(map(str, shape))} images, "
                         f"got {images.shape}")
    if labels.ndim != 1:
        raise ValueError(f"{label_path}: expected a list of labels, got shape {labels.shape}")
    if images.shape[0] != size:
        raise ValueError(f"{image_path}: expected the {size} images of the {split} split, "
                         f"got {images.shape[0]}")
    if labels.shape != (images.shape[0],):
        raise ValueError(f"{label_path}: expected {images.shape[0]} labels (one per image), "
                         f"got {labels.shape[0]}")
    if labels.size and labels.max() >= spec.num_classes:
        raise ValueError(f"{label_path}: labels must be classes 0-{spec.num_classes - 1}, "
                         f"found {labels.max()}")
    return images, labels


def check_matches_dataset(images, name, path):
    """Raises ValueError if the training images at `path` look more like another dataset's
    than like `name`'s: the IDX datasets share file names and shapes, but not their mean
    pixel (Dataset.mean_pixel), so one is not prepared under the other's name."""
    mean = float(images.mean()) if images.size else 0.0
    described = [spec for spec in datasets.DATASETS.values() if spec.mean_pixel is not None]
    nearest = min(described, key=lambda spec: abs(spec.mean_pixel - mean))
    if nearest.name != name:
        raise ValueError(f"{path} does not hold {name}: its images' mean pixel is {mean:.0f}, "
                         f"as {nearest.title}'s (about {nearest.mean_pixel:.0f}); pass "
                         f"--dataset={nearest.name} or the {name} files")


def prepare_from_idx(idx_dir, data_dir, name="mnist"):
    """Writes the TFDS dataset `name` into `data_dir` from IDX files, with no network.

    Uses TFDS's own MNIST builder (so `tfds.load(name, data_dir=data_dir)` reads the result
    exactly like a downloaded copy), with its download step replaced by the local files.
    Returns the prepared dataset's folder.
    """
    spec = datasets.get(name)
    if spec.tfds_builder is None:
        prepared = [s.name for s in datasets.DATASETS.values() if s.tfds_builder]
        raise ValueError(f"--dataset={name} is not prepared from IDX files (they prepare "
                         f"{' or '.join(prepared)})"
                         + (f": {name} is built from {spec.stacked_from} when training, so "
                            f"prepare --dataset={spec.stacked_from}" if spec.stacked_from else ""))
    for split in IDX_FILES:  # validate everything before writing anything
        images, _ = read_idx_split(idx_dir, split, name)
        if split == "train":
            check_matches_dataset(images, name, find_idx_file(idx_dir, IDX_FILES[split][0]))
        del images
    # After the checks: a bad file is refused without TFDS's import (heavy).
    import tensorflow_datasets as tfds

    base = getattr(tfds.image_classification, spec.tfds_builder)
    with tempfile.TemporaryDirectory() as raw:
        paths = {}
        for split, stems in IDX_FILES.items():
            for kind, stem in zip(("data", "labels"), stems):
                src = find_idx_file(idx_dir, stem)
                dst = os.path.join(raw, stem)
                with (gzip.open if src.endswith(".gz") else open)(src, "rb") as f, \
                        open(dst, "wb") as out:
                    shutil.copyfileobj(f, out)
                paths[f"{split}_{kind}"] = dst

        def split_generators(self, dl_manager):
            del dl_manager
            return [
                tfds.core.SplitGenerator(
                    name=split,
                    gen_kwargs=dict(num_examples=spec.split_sizes[split],
                                    data_path=paths[f"{split}_data"],
                                    label_path=paths[f"{split}_labels"]),
                )
                for split in IDX_FILES
            ]

        with tfds.core.registered.skip_registration():
            local = type("LocalIdx" + base.__name__, (base,),
                         {"name": spec.tfds_name, "_split_generators": split_generators})
        builder = local(data_dir=resolve_data_dir(data_dir))
        builder.download_and_prepare()
    return builder.data_path
