"""Train the evaluator's classifier of a dataset: `python -m gan.train_classifier
--dataset=mnist` (or fashion_mnist).

Reproduces the committed gan/assets/<dataset>_classifier.weights.h5 (seeded, deterministic
ops) as <dataset>_classifier.weights.h5 in the current folder (or --output) and prints its
accuracy on the dataset's test split. A few minutes on 2 CPU cores. It never writes into the
package (in an editable install, the repository): to replace a committed file, copy the new
one over it by hand.
"""

from absl import app, flags, logging

from gan import cli, datasets, files

FLAGS = flags.FLAGS

# The datasets judged by a classifier of their own (gan.datasets: its weights, epochs and
# least test accuracy).
JUDGED = {name: spec for name, spec in datasets.DATASETS.items() if spec.classifier_weights}

flags.DEFINE_string("dataset", "mnist",
                    f"Which dataset's classifier to train: {' or '.join(JUDGED)}.")
flags.DEFINE_integer("epochs", None,
                     "Passes over the training images (default: "
                     + ", ".join(f"{s.classifier_epochs} for {d}" for d, s in JUDGED.items())
                     + ").")
flags.DEFINE_integer("batch_size", 64, "Images per Adam step.")
flags.DEFINE_integer("seed", 0, "Seed of the initial weights and the data order.")
flags.DEFINE_string("output", None,
                    "Where to write the weights (a .weights.h5 file outside the package; "
                    "default: <dataset>_classifier.weights.h5 in the current folder). "
                    "Evaluation uses the package's gan/assets/<dataset>_classifier.weights.h5.")
flags.DEFINE_string("data_dir", None,
                    "TFDS data folder (default: $TFDS_DATA_DIR, else ~/tensorflow_datasets).")
flags.DEFINE_float("min_accuracy", None,
                   "Refuse to write weights whose test accuracy is below this (default: "
                   + ", ".join(f"{s.classifier_min_accuracy} for {d}" for d, s in JUDGED.items())
                   + ").")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if FLAGS.dataset not in JUDGED:  # before TensorFlow's import: a typo fails at once
        stacked_from = getattr(datasets.DATASETS.get(FLAGS.dataset), "stacked_from", None)
        cli.fail(f"--dataset must be one of {', '.join(JUDGED)}, got '{FLAGS.dataset}'"
                 + (f" (the evaluator of {FLAGS.dataset} uses the {stacked_from} classifier "
                    "on each channel)" if stacked_from else ""))
    spec = JUDGED[FLAGS.dataset]
    epochs = FLAGS.epochs if FLAGS.epochs is not None else spec.classifier_epochs
    min_accuracy = (FLAGS.min_accuracy if FLAGS.min_accuracy is not None
                    else spec.classifier_min_accuracy)
    output = FLAGS.output or f"{FLAGS.dataset}_classifier.weights.h5"
    try:  # every check before the minutes of training
        for name, value in (("epochs", epochs), ("batch_size", FLAGS.batch_size)):
            if value <= 0:
                raise ValueError(f"--{name} must be positive, got {value}")
        if not 0 <= min_accuracy <= 1:
            raise ValueError(f"--min_accuracy must be in [0, 1], got {min_accuracy}")
        files.check_output_file(output, "output", (".weights.h5",))
        files.check_data_dir(FLAGS.data_dir)
    except ValueError as e:
        cli.fail(e)
    from gan.datasets import load as data
    from gan.evaluation import classifier  # after flag parsing: --help stays fast

    logging.set_verbosity(logging.WARNING)
    try:
        train_x, train_y = data.load_split(FLAGS.dataset, "train", FLAGS.data_dir)
        test_x, test_y = data.load_split(FLAGS.dataset, "test", FLAGS.data_dir)
    except (ValueError, data.DataUnavailableError) as e:
        cli.fail(e)
    model = classifier.train_classifier(train_x / 255.0, train_y, epochs=epochs,
                                        batch_size=FLAGS.batch_size, seed=FLAGS.seed, verbose=2,
                                        dataset=spec.name)
    acc = classifier.accuracy(model, test_x / 255.0, test_y)
    print(f"{spec.title} test accuracy: {acc:.4f}")
    if acc < min_accuracy:
        cli.fail(f"test accuracy {acc:.4f} is below --min_accuracy={min_accuracy}; "
                 f"{output} was not written", exit_code=1)
    try:
        classifier.save_weights(model, output)
    except OSError as e:  # e.g. the folder was removed or filled up during training
        cli.fail(f"--output={output}: {e.strerror or e}", exit_code=1)
    print(f"Wrote {output}")


def run():
    """Console entry point `gan-train-classifier`, the same as `python -m gan.train_classifier`."""
    cli.run(main, __name__)


if __name__ == "__main__":
    run()
