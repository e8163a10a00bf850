"""Train the evaluator's MNIST classifier: `python -m gan.train_classifier`.

Reproduces the committed gan/assets/mnist_classifier.weights.h5 (seeded, deterministic ops)
and prints its accuracy on the MNIST test split. A few minutes on 2 CPU cores.
"""


from absl import app, flags, logging

from gan import cli

FLAGS = flags.FLAGS

flags.DEFINE_integer("epochs", 3, "Passes over the 60,000 MNIST training digits.")
flags.DEFINE_integer("batch_size", 64, "Digits per Adam step.")
flags.DEFINE_integer("seed", 0, "Seed of the initial weights and the data order.")
flags.DEFINE_string("output", None,
                    "Where to write the weights (a .weights.h5 file; default: the package's "
                    "gan/assets/mnist_classifier.weights.h5, which evaluation uses).")
flags.DEFINE_string("data_dir", None,
                    "TFDS data folder (default: $TFDS_DATA_DIR, else ~/tensorflow_datasets).")
flags.DEFINE_float("min_accuracy", 0.99,
                   "Refuse to write weights whose test accuracy is below this.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from gan import classifier, data  # after flag parsing: --help stays fast

    logging.set_verbosity(logging.WARNING)
    output = FLAGS.output or classifier.WEIGHTS_PATH
    try:
        for name in ("epochs", "batch_size"):
            if FLAGS[name].value <= 0:
                raise ValueError(f"--{name} must be positive, got {FLAGS[name].value}")
        if not output.endswith(".weights.h5"):
            raise ValueError(f"--output must end in .weights.h5, got {output}")
        train_x, train_y = data.load_split("mnist", "train", FLAGS.data_dir)
        test_x, test_y = data.load_split("mnist", "test", FLAGS.data_dir)
    except (ValueError, data.DataUnavailableError) as e:
        cli.fail(e)
    model = classifier.train_classifier(train_x / 255.0, train_y, epochs=FLAGS.epochs,
                                        batch_size=FLAGS.batch_size, seed=FLAGS.seed, verbose=2)
    acc = classifier.accuracy(model, test_x / 255.0, test_y)
    print(f"MNIST test accuracy: {acc:.4f}")
    if acc < FLAGS.min_accuracy:
        cli.fail(f"test accuracy {acc:.4f} is below --min_accuracy={FLAGS.min_accuracy}; "
                 f"{output} was not written", exit_code=1)
    classifier.save_weights(model, output)
    print(f"Wrote {output}")


def run():
    """Console entry point `gan-train-classifier`, the same as `python -m gan.train_classifier`."""
    cli.run(main, __name__)


if __name__ == "__main__":
    run()
