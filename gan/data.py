"""Prepare a dataset offline: `python -m gan.data --prepare_from=IDX_FOLDER --data_dir=DIR`
builds the TFDS dataset from its four IDX files (gan.datasets.idx), so that `gan.train
--data_dir=DIR` needs no network. Exit 2 on bad input, naming the flag or file.
"""

import os

from gan import datasets
from gan.files import resolve_data_dir


def _main(argv):
    from absl import flags

    from gan import cli, files

    flags_ = flags.FLAGS
    if len(argv) > 1:
        cli.fail(f"unexpected arguments: {' '.join(argv[1:])}")
    if not flags_.prepare_from:
        cli.fail("--prepare_from=DIR is required (the folder of the IDX files)")
    if not os.path.isdir(flags_.prepare_from):
        cli.fail(f"--prepare_from={flags_.prepare_from} is not a folder (give the folder that "
                 "holds the four IDX files)")
    data_dir = resolve_data_dir(flags_.data_dir)
    problem = files.creatable_dir_problem(data_dir)
    if problem:
        cli.fail(f"--data_dir={data_dir} {problem}")
    try:
        from gan.datasets import idx

        path = idx.prepare_from_idx(flags_.prepare_from, flags_.data_dir, flags_.dataset)
    except FileNotFoundError as e:
        cli.fail(f"--prepare_from={flags_.prepare_from}: {e}")
    except (OSError, ValueError) as e:
        cli.fail(e)
    print(f"Prepared {flags_.dataset} in {path}. Train with: "
          f"python -m gan.train --data_dir={data_dir}")


def run():
    """Console entry point `gan-data`, the same as `python -m gan.data`."""
    from absl import flags

    flags.DEFINE_string("prepare_from", None,
                        "Folder with the four IDX files (train-images-idx3-ubyte[.gz], "
                        "train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], "
                        "t10k-labels-idx1-ubyte[.gz]).")
    flags.DEFINE_string("data_dir", None,
                        "TFDS data folder to write (default: $TFDS_DATA_DIR, else "
                        "~/tensorflow_datasets); pass the same to gan.train.")
    # Every dataset's name is accepted, so that one without IDX files of its own (Stacked
    # MNIST) is refused by gan.datasets.idx saying what to prepare instead.
    flags.DEFINE_enum("dataset", "mnist", list(datasets.DATASETS), "Which dataset the files hold.")
    from gan import cli

    cli.run(_main, __name__)


if __name__ == "__main__":
    run()
