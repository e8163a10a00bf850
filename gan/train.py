"""Train the GAN: `python -m gan.train --epochs=10000`.

Only flags live here; the run is gan.train_lib.train(config). Rerunning the same command resumes from
the latest checkpoint in --checkpoint_dir; after completion it does nothing more.

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

DEFAULTS = config_lib.TrainConfig()
FLAGS = flags.FLAGS

flags.DEFINE_integer(
    "epochs", DEFAULTS.epochs,
    "Training iterations, as in the original script: ONE 'epoch' is one iteration on one "
    "batch (not a pass over the dataset). --epochs=10000 does what `python main.py` did.")
flags.DEFINE_integer("batch_size", DEFAULTS.batch_size,
                     "Real (and fake) images per iteration: the global batch, split over the "
                     "replicas of --strategy.")
flags.DEFINE_integer("noise_dim", DEFAULTS.noise_dim, "Size of the generator's noise input.")
flags.DEFINE_string("model", DEFAULTS.model,
                    "Architecture: 'mlp' is the original's; 'mlp_large' a deeper, wider MLP "
                    "with LeakyReLU; 'dcgan' convolutional (see gan/models.py).")
flags.DEFINE_string("dataset", DEFAULTS.dataset,
                    "TFDS dataset: mnist or fashion_mnist; or stacked_mnist (three random MNIST "
                    "digits as the channels of one 28x28x3 image: 1,000 modes; gan.stacked).")
flags.DEFINE_string(
    "data_dir", None,
    "TFDS data folder (default: $TFDS_DATA_DIR, else ~/tensorflow_datasets). See "
    "`python -m gan.data --help` to prepare it offline from the IDX files.")
flags.DEFINE_integer("seed", DEFAULTS.seed, "Seed of weights, noise and data order.")
flags.DEFINE_float("g_learning_rate", DEFAULTS.g_learning_rate, "Generator Adam learning rate.")
flags.DEFINE_float("d_learning_rate", DEFAULTS.d_learning_rate,
                   "Discriminator Adam learning rate.")
flags.DEFINE_float("beta_1", DEFAULTS.beta_1, "Adam beta_1 of both optimizers.")
flags.DEFINE_float("beta_2", DEFAULTS.beta_2, "Adam beta_2 of both optimizers.")
flags.DEFINE_string("image_dir", DEFAULTS.image_dir,
                    "Where generated_<epoch>.png strips are written.")
flags.DEFINE_integer("save_every", DEFAULTS.save_every,
                     "Write an image strip at every epoch that is a multiple of this.")
flags.DEFINE_integer("num_images", DEFAULTS.num_images, "Digits per image strip.")
flags.DEFINE_string("checkpoint_dir", DEFAULTS.checkpoint_dir,
                    "Checkpoint folder; a rerun resumes from its latest checkpoint.")
flags.DEFINE_integer("checkpoint_every", DEFAULTS.checkpoint_every,
                     "Save a checkpoint every this many epochs (and at the end).")
flags.DEFINE_integer("keep_checkpoints", DEFAULTS.keep_checkpoints,
                     "How many recent checkpoints to keep.")
flags.DEFINE_integer("steps_per_call", DEFAULTS.steps_per_call,
                     "Iterations per compiled call (speed only; results do not depend on it).")
flags.DEFINE_bool("xla", DEFAULTS.xla, "Compile the training loop with XLA (jit_compile).")
flags.DEFINE_string(
    "xla_cache_dir", DEFAULTS.xla_cache_dir,
    "Folder where XLA keeps compiled training loops, so that a rerun with the same settings "
    "starts 1-2 s sooner on 2 CPU cores (default: $GAN_CACHE_DIR/xla, else "
    "~/.cache/gan/xla). Empty (--xla_cache_dir=) turns it off. Speed only: results are the "
    "same.")
flags.DEFINE_float("log_every_secs", DEFAULTS.log_every_secs,
                   "Seconds between progress lines.")
flags.DEFINE_string(
    "logs_dir", DEFAULTS.logs_dir,
    "TensorBoard logs, metrics history (metrics.jsonl), and at the end the loss plot "
    "(losses.png) and animated strips (progress.gif). Default: <checkpoint_dir>/logs. "
    "Watch a run with `tensorboard --logdir <checkpoint_dir>/logs`.")
flags.DEFINE_bool("quiet", DEFAULTS.quiet,
                  "Print no progress lines (start, end and warnings still print).")
flags.DEFINE_integer(
    "eval_every", DEFAULTS.eval_every,
    "Every this many epochs, judge --eval_samples generated images with the classifier of "
    "--dataset and log the metrics of `python -m gan.evaluate` (0 = never).")
flags.DEFINE_integer("eval_samples", DEFAULTS.eval_samples,
                     "Generated images per --eval_every evaluation.")
flags.DEFINE_bool("deterministic", DEFAULTS.deterministic,
                  "TensorFlow op determinism: the same seed gives bit-identical weights, also "
                  "after an interruption and resume (slower; see docs/reliability.md).")
# Beyond the original: recipes in experiments/*.flags use these.
flags.DEFINE_bool("conditional", DEFAULTS.conditional,
                  "Class-conditional GAN: G and D take the digit label; strips show 0-9.")
flags.DEFINE_integer("clusters", DEFAULTS.clusters,
                     "With --conditional: condition on each training image's k-means cluster "
                     "(this many clusters of the pixels) instead of its digit label, so no "
                     "label is used (self-conditioning); samples are drawn with the clusters' "
                     "sizes. 0 = off. Part of the checkpoint.")
flags.DEFINE_string("loss", DEFAULTS.loss,
                    "GAN loss: 'bce' (the original's, non-saturating), 'hinge' or 'wgan-gp'.")
flags.DEFINE_float("gp_weight", DEFAULTS.gp_weight, "Gradient-penalty weight of --loss=wgan-gp.")
flags.DEFINE_bool("spectral_norm", DEFAULTS.spectral_norm,
                  "Spectral normalisation of the discriminator's layers.")
flags.DEFINE_bool("minibatch_std", DEFAULTS.minibatch_std,
                  "Give the discriminator the spread of features over each group of 4 samples "
                  "(minibatch standard deviation, against mode collapse); --batch_size must "
                  "be a multiple of 4.")
flags.DEFINE_integer("d_steps", DEFAULTS.d_steps,
                     "Discriminator updates per generator update (each on its own real batch).")
flags.DEFINE_bool("ema", DEFAULTS.ema,
                  "Keep an exponential moving average of the generator's weights (in the "
                  "checkpoint); images and evaluation use it.")
flags.DEFINE_float("ema_decay", DEFAULTS.ema_decay, "Decay of --ema per generator update.")
flags.DEFINE_float("diversity", DEFAULTS.diversity,
                   "Weight of the mode-seeking term (MSGAN, Mao et al. 2019): G also "
                   "minimizes 1 / (mean |G(z1) - G(z2)| / mean |z1 - z2|) over pairs of its "
                   "batch (with --conditional each pair shares a label), for more variety "
                   "per label. 0 = off; --batch_size must be even.")
# Scaling out (gan.distribute; docs/scaling.md).
flags.DEFINE_string("strategy", DEFAULTS.strategy,
                  "tf.distribute strategy: 'default' (one device), 'mirrored' (all local GPUs, "
                  "or the --cpu_devices logical CPUs) or 'multi_worker' (hosts and this "
                  "worker's task from $TF_CONFIG). --batch_size is the global batch, split "
                  "evenly over the replicas.")
flags.DEFINE_integer("cpu_devices", DEFAULTS.cpu_devices,
                     "Split the CPU into this many logical devices (0 = off), e.g. to run "
                     "--strategy=mirrored on a machine without GPUs.")
flags.DEFINE_integer("pack", DEFAULTS.pack,
                     "PacGAN: D judges packs of this many samples (real with real, fake with "
                     "fake) concatenated along the channels; 1 = off. --batch_size counts "
                     "images and must be a multiple of it.")
flags.DEFINE_bool("mixed_precision", DEFAULTS.mixed_precision,
                  "Compute in float16 (Keras policy mixed_float16; variables and losses stay "
                  "float32) with dynamic loss scaling; for GPUs. Part of the checkpoint: a "
                  "run resumes only with the same setting.")


def config_from_flags():
    """A TrainConfig holding the value of every flag named like one of its fields."""
    values = {name: FLAGS[name].value for name in config_lib.TrainConfig.__dataclass_fields__
              if name in FLAGS}
    return config_lib.TrainConfig(**values)


def folder_lock(config):
    """The lock of an existing --checkpoint_dir, taken before TensorFlow's import (seconds)
    so that a second run on it stops at once; train() takes it again (sharing this one) or,
    for a new folder, first. Under multi_worker only train() knows which worker is the
    chief, the one that locks."""
    from gan import runlock

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
    from gan import runlock

    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(folder_lock(config))
        except runlock.FolderInUseError as e:
            cli.fail(e)
        run_training(config)


def run_training(config):
    """main's work once the folder is locked: train, mapping errors to exit codes."""
    from gan import compilation

    compilation.configure(config)  # before TensorFlow's import sets up its devices
    with cli.heavy_imports():  # after flag parsing: --help stays fast
        from gan import checkpoints, data, files, interrupts, runlock, train_lib

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
