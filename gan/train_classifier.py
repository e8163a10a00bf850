"""Train the evaluator's classifier of a dataset: `python -m gan.train_classifier
--dataset=mnist` (or fashion_mnist).

Reproduces the committed gan/assets/<dataset>_classifier.weights.h5 (seeded, deterministic
ops) and prints its accuracy on the dataset's test split. A few minutes on 2 CPU cores.
"""


from absl import app, flags, logging

from gan import cli, datasets

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
                    "Where to write the weights (a .weights.h5 file; default: the package's "
                    "gan/assets/<dataset>_classifier.weights.h5, which evaluation uses).")
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
        cli.fail(f"--dataset must be one of {', '.join(JUDGED)}, got '{FLAGS.dataset}'")
    spec = JUDGED[FLAGS.dataset]
    from gan import classifier, data  # after flag parsing: --help stays fast

    logging.set_verbosity(logging.WARNING)
    try:
        committed = classifier.weights_path(FLAGS.dataset)
        output = FLAGS.output or committed
        epochs = FLAGS.epochs if FLAGS.epochs is not None else spec.classifier_epochs
        min_accuracy = (FLAGS.min_accuracy if FLAGS.min_accuracy is not None
                        else spec.classifier_min_accuracy)
        for name, value in (("epochs", epochs), ("batch_size", FLAGS.batch_size)):
            if value <= 0:
                raise ValueError(f"--{name} must be positive, got {value}")
        if not output.endswith(".weights.h5"):
            raise ValueError(f"--output must end in .weights.h5, got {output}")
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
    classifier.save_weights(model, output)
    print(f"Wrote {output}")


def run():
    """Console entry point `gan-train-classifier`, the same as `python -m gan.train_classifier`."""
    cli.run(main, __name__)


if __name__ == "__main__":
    run()
