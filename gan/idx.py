"""Preparing the TFDS MNIST-like datasets offline from their four IDX files
(`python -m gan.data --prepare_from=DIR`)."""

import gzip
import os
import shutil
import struct
import tempfile

import numpy as np

from gan import datasets
from gan.files import resolve_data_dir

# split -> its (images, labels) files, as MNIST and its look-alikes are distributed
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path):
    """Reads an IDX file (gzip'd or not) into a uint8 array; raises ValueError if malformed."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 8 or data[0:2] != b"\x00\x00" or data[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
    ndim = data[3]
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
    image_shape and split_sizes: 28x28, 60,000 and 10,000) from the IDX files in `folder`."""
    spec = datasets.get(name)
    size, shape = spec.split_sizes[split], spec.image_shape
    image_stem, label_stem = IDX_FILES[split]
    images = read_idx(find_idx_file(folder, image_stem))
    labels = read_idx(find_idx_file(folder, label_stem))
    if images.ndim != 3 or images.shape[1:] != shape:
        raise ValueError(f"{image_stem}: expected N x {' x '.join(map(str, shape))} images, "
                         f"got {images.shape}")
    if labels.shape != (images.shape[0],):
        raise ValueError(f"{split}: {images.shape[0]} images but labels of shape {labels.shape}")
    if images.shape[0] != size:
        raise ValueError(f"{split}: expected {size} images, got {images.shape[0]}")
    return images, labels


def prepare_from_idx(idx_dir, data_dir, name="mnist"):
    """Writes the TFDS dataset `name` into `data_dir` from IDX files, with no network.

    Uses TFDS's own MNIST builder (so `tfds.load(name, data_dir=data_dir)` reads the result
    exactly like a downloaded copy), with its download step replaced by the local files.
    Returns the prepared dataset's folder.
    """
    spec = datasets.get(name)
    if spec.tfds_builder is None:
        raise ValueError(f"--dataset={name} is not prepared from IDX files")
    for split in IDX_FILES:  # validate everything before writing anything
        read_idx_split(idx_dir, split, name)
    import tensorflow_datasets as tfds  # heavy import, only where a dataset is prepared

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
