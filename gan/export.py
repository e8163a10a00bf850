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
      shuffled by the seed: gan.inference.sampling_labels).

The module also holds noise_dim and num_classes (0 for an unconditional generator) as
int32 variables and the checkpoint's architecture JSON as a string variable:

  m = tf.saved_model.load("exported_generator")
  m.signatures["serving_default"](noise=tf.random.normal([16, 100]))["images"]
  m.signatures["serving_default"](noise=tf.random.normal([16, 100]),          # conditional
                                  labels=tf.fill([16], 7))["images"]         # sixteen 7s
  m.sample(num=16, seed=0)["images"]   # the digits of `python -m gan.sample --seed=0`
"""


from absl import app, flags

from gan import cli

FLAGS = flags.FLAGS

flags.DEFINE_string("checkpoint_dir", "checkpoints",
                    "Folder of a training run's checkpoints (gan.train's --checkpoint_dir); "
                    "its newest checkpoint is exported.")
flags.DEFINE_string("out", None, "Folder to write the SavedModel to (required).")
flags.DEFINE_bool("overwrite", False,
                  "Replace an existing non-empty --out folder (only once the new export "
                  "has been written).")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS.out:
        cli.fail("--out=DIR is required (the folder to write the SavedModel to)")
    from gan import checkpoints, inference  # after flag parsing: --help stays fast

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
