"""Train the GAN: `python -m gan.train --epochs=10000`.

Only flags live here; the run is gan.training.run.train(config). Rerunning the same command
resumes from the latest checkpoint in --checkpoint_dir; after completion it does nothing more.

Exit codes: 0 trained (or nothing left to do); 2 bad flags, missing data, unusable
checkpoints, a NaN/Inf loss (nothing bad is saved), a --checkpoint_dir in use by another run,
or a full disk (the newest complete checkpoint is kept); 130 stopped by Ctrl-C (SIGINT) and
143 stopped by SIGTERM, each after saving a checkpoint at the current epoch (a second
signal stops at once).
"""

import contextlib
import os
import sys

from absl import app, flags, logging

from gan import cli, files
from gan import config as config_lib

FLAGS = flags.FLAGS

# The flag definer of each option type (TrainConfig's annotations; `str | None` is a string
# flag whose default is None).
_DEFINE = {int: flags.DEFINE_integer, float: flags.DEFINE_float, bool: flags.DEFINE_bool,
           str: flags.DEFINE_string, str | None: flags.DEFINE_string}


def define_flags(config_class=config_lib.TrainConfig, flag_values=FLAGS):
    """One flag per field of `config_class`, named like it, with its default and help."""
    for field in config_class.fields():
        _DEFINE[field.type](field.name, field.default, field.metadata["help"],
                            flag_values=flag_values)


def config_from_flags(config_class=config_lib.TrainConfig, flag_values=FLAGS):
    """A `config_class` holding the value of each of its fields' flags."""
    return config_class(**{field.name: flag_values[field.name].value
                           for field in config_class.fields()})


define_flags()


def folder_lock(config):
    """The lock of an existing --checkpoint_dir, taken before TensorFlow's import (seconds)
    so that a second run on it stops at once; train() takes it again (sharing this one) or,
    for a new folder, first. Under multi_worker only train() knows which worker is the
    chief, the one that locks."""
    from gan.training import runlock

    if config.strategy == "multi_worker" or not os.path.isdir(config.checkpoint_dir):
        return contextlib.nullcontext()
    return runlock.hold(config.checkpoint_dir)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    config = config_from_flags()
    try:  # bad flags and output folders refused before TensorFlow's import (seconds)
        config.validate()
        config.check_folders()
        files.check_data_dir(config.data_dir)
    except ValueError as e:
        cli.fail(e)
    from gan.training import runlock

    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(folder_lock(config))
        except runlock.FolderInUseError as e:
            cli.fail(e)
        run_training(config)


def run_training(config):
    """main's work once the folder is locked: train, mapping errors to exit codes."""
    from gan.training import compilation

    compilation.configure(config)  # before TensorFlow's import sets up its devices
    with cli.heavy_imports():  # after flag parsing: --help stays fast
        from gan import files
        from gan.datasets import load as data
        from gan.training import checkpoints, interrupts, runlock, run as train_lib

    logging.set_verbosity(logging.WARNING)  # TFDS's INFO lines would bury the progress

    try:
        train_lib.train(config)
    except (ValueError, data.DataUnavailableError, checkpoints.CheckpointError,
            train_lib.NonFiniteLossError, compilation.CacheError, runlock.FolderInUseError) as e:
        cli.fail(e)
    except files.DiskFullError as e:
        kept = checkpoints.list_checkpoints(config.checkpoint_dir)
        cli.fail(f"{e} It resumes from " + (f"the newest complete checkpoint, {kept[0]}."
                                            if kept else "step 0 (no checkpoint yet)."))
    except interrupts.Interrupted as e:
        print(e, file=sys.stderr)
        sys.exit(e.exit_code)


def run():
    """Console entry point `gan-train`, the same as `python -m gan.train`."""
    cli.run(main, __name__)


if __name__ == "__main__":
    run()
