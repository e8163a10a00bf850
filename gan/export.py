"""Export a trained generator as a TensorFlow SavedModel.

  python -m gan.export --checkpoint_dir=checkpoints --out=exported_generator

The folder loads with TensorFlow alone (no Keras, no `gan` package). Its signatures
(Z = the noise size, 100 by default; N images; images are uint8 [N, 28, 28], 0-255):

  serving_default
      unconditional generator:  noise float32 [N, Z]                   -> {"images"}
      conditional (--conditional, also with --clusters):
                                noise float32 [N, Z], labels int32 [N] -> {"images"}
          labels: the digit asked for in each image (0-9), or for a --clusters run the
          cluster id (0..clusters-1); a label out of range raises InvalidArgumentError.
  sample
      num int32 [], seed int32 [] -> {"images"} [num, 28, 28]: the digits of
      `python -m gan.sample --num=num --seed=seed`: the same noise and, for a conditional
      generator, the same labels (digits 0, 1, ..., 9, 0, ...; for a --clusters run
      cluster ids drawn with the clusters' shares of the training data, in an order
      shuffled by the seed: gan.models.inference.sampling_labels).

The module also holds noise_dim and num_classes (0 for an unconditional generator) as
int32 variables and the checkpoint's architecture JSON as a string variable:

  m = tf.saved_model.load("exported_generator")
  m.signatures["serving_default"](noise=tf.random.normal([16, 100]))["images"]
  m.signatures["serving_default"](noise=tf.random.normal([16, 100]),          # conditional
                                  labels=tf.fill([16], 7))["images"]         # sixteen 7s
  m.sample(num=16, seed=0)["images"]   # the digits of `python -m gan.sample --seed=0`
"""

import os

from absl import app, flags

from gan import cli

FLAGS = flags.FLAGS

flags.DEFINE_string("checkpoint_dir", "checkpoints",
                    "Folder of a training run's checkpoints (gan.train's --checkpoint_dir); "
                    "its newest checkpoint is exported.")
flags.DEFINE_string("out", None, "Folder to write the SavedModel to (required).")
flags.DEFINE_bool("overwrite", False,
                  "Replace an earlier export in --out (only once the new export has been "
                  "written). Only a folder holding a SavedModel and nothing else is "
                  "replaced: never a checkpoint, data or other folder.")

# What a SavedModel folder holds (tf.saved_model.save); --overwrite replaces only such a one.
EXPORT_ENTRIES = {"saved_model.pb", "variables", "assets", "fingerprint.pb"}


def check_out(out, checkpoint_dir, overwrite):
    """Raises ValueError naming --out unless exporting there can neither fail on the path
    nor destroy anything: not a file, not the checkpoint folder nor a folder holding it, not
    inside the package, its folder creatable, and if it is a non-empty folder, an earlier
    export that --overwrite is given to replace. Creates nothing."""
    from gan import files

    where = f"--out={out}"
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"{where} is a file; give a folder to write the SavedModel to")
    if files.inside(checkpoint_dir, out):
        raise ValueError(f"{where} is or holds --checkpoint_dir={checkpoint_dir}: exporting "
                         "there would replace the run's checkpoints; choose another folder")
    if files.inside(out, files.PACKAGE_DIR) or files.inside(files.PACKAGE_DIR, out):
        raise ValueError(f"{where} is or holds the gan package's own folder; choose another")
    problem = files.creatable_dir_problem(os.path.dirname(os.path.abspath(out)))
    if problem:
        raise ValueError(f"{where}: its folder {problem}")
    entries = set(os.listdir(out)) if os.path.isdir(out) else set()
    if entries and not (entries <= EXPORT_ENTRIES and "saved_model.pb" in entries):
        raise ValueError(f"{where} is a non-empty folder that is not an earlier export "
                         "(a SavedModel alone); it is never replaced, even with --overwrite: "
                         "choose another folder")
    if entries and not overwrite:
        raise ValueError(f"{where} already holds an export; choose another folder or pass "
                         "--overwrite")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS.out:
        cli.fail("--out=DIR is required (the folder to write the SavedModel to)")
    try:
        check_out(FLAGS.out, FLAGS.checkpoint_dir, FLAGS.overwrite)
    except ValueError as e:
        cli.fail(e)
    from gan.models import inference
    from gan.training import checkpoints  # after flag parsing: --help stays fast

    try:
        generator, architecture, step = checkpoints.restore_generator(FLAGS.checkpoint_dir)
    except checkpoints.CheckpointError as e:
        cli.fail(f"--checkpoint_dir={FLAGS.checkpoint_dir}: {e}")
    try:
        path = inference.export_saved_model(generator, architecture, FLAGS.out,
                                            overwrite=FLAGS.overwrite)
    except FileExistsError as e:
        cli.fail(f"--out={FLAGS.out}: {e}; choose another folder or pass --overwrite")
    except OSError as e:
        cli.fail(f"--out={FLAGS.out}: {e}")
    labels = ", labels=tf.fill([16], 0)" if architecture.get("conditional") else ""
    print(f"Exported the generator of the step-{step} checkpoint in {FLAGS.checkpoint_dir} "
          f"to {path}.\nLoad it with: tf.saved_model.load({path!r}).signatures"
          f"['serving_default'](noise=tf.random.normal([16, {architecture['noise_dim']}])"
          f"{labels})['images']")


def run():
    """Console entry point `gan-export`, the same as `python -m gan.export`."""
    cli.run(main, __name__)


if __name__ == "__main__":
    run()
