"""Measure generated images: `python -m gan.evaluate --checkpoint_dir=checkpoints`.

Samples --num_samples images from the newest checkpoint's generator (or reads --images, a
.npy array or a folder of PNGs, from any generator), judges them as images of their dataset
(--dataset, gan.datasets) and prints a table, beside the same figures for as many real
training images (the floor), then one JSON line. Logic in gan.evaluation.evaluator.evaluate: MNIST
digits or Fashion-MNIST clothes by their dataset's classifier against its test split; Stacked
MNIST by the modes covered (of 1,000 digit triples) and KL(samples || uniform). A run
trained with --truncation=t is sampled at t unless --truncation says otherwise (0 = off).
"""

import json
import os

from absl import app, flags, logging

from gan import cli, datasets

FLAGS = flags.FLAGS

flags.DEFINE_string("checkpoint_dir", "checkpoints",
                    "Training checkpoint folder; its newest checkpoint's generator is sampled.")
flags.DEFINE_string("images", None,
                    "Evaluate these images instead of a checkpoint: a .npy array [N, 28, 28] "
                    "([N, 28, 28, 3] with --dataset=stacked_mnist) "
                    "(uint8, or float in [0, 1]) or a folder of 28x28 grayscale .png files.")
flags.DEFINE_integer("num_samples", None,
                     "Digits sampled from the generator (ignored with --images, which are "
                     "all used); default 10,000, or 26,000 for a Stacked MNIST checkpoint "
                     "(PacGAN's protocol). The real floor uses as many training digits.")
flags.DEFINE_integer("seed", 0, "Seed of the sampling noise.")
cli.define_truncation_flag(__name__)
flags.DEFINE_string("json_out", None, "Also write the JSON result to this file (atomically).")
flags.DEFINE_string("dataset", None,
                    "What the images are meant to be, which picks how they are judged and "
                    f"the real floor: one of {', '.join(datasets.DATASETS)} (default: the "
                    "dataset the checkpoint's generator was trained on; mnist for --images).")
flags.DEFINE_string("data_dir", None,
                    "TFDS data folder (default: $TFDS_DATA_DIR, else ~/tensorflow_datasets).")


def check_json_out(path):
    """Fails before any work if --json_out cannot be written (creating nothing)."""
    if path is None:
        return
    from gan import files

    files.check_output_file(path, "json_out", (".json",))


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    try:  # before TensorFlow's import: these refusals are immediate
        check_json_out(FLAGS.json_out)
        from gan import files

        files.check_data_dir(FLAGS.data_dir)
    except ValueError as e:
        cli.fail(e)
    from gan.datasets import load as data
    from gan.evaluation import evaluator as eval_lib
    from gan.models import inference
    from gan.training import checkpoints  # after flag parsing

    logging.set_verbosity(logging.WARNING)
    try:
        if FLAGS.num_samples is not None and FLAGS.num_samples < eval_lib.MIN_IMAGES:
            raise ValueError(f"--num_samples must be at least {eval_lib.MIN_IMAGES}, "
                             f"got {FLAGS.num_samples}")
        dataset = eval_lib.resolve_dataset(FLAGS.dataset)  # an unknown one fails here
        if FLAGS.images:
            pictures = eval_lib.load_images(FLAGS.images, dataset)
            source, labels = {"images": os.path.abspath(FLAGS.images)}, None
        else:
            generator, architecture, step = checkpoints.restore_generator(FLAGS.checkpoint_dir)
            dataset = eval_lib.resolve_dataset(FLAGS.dataset, architecture)
            num = FLAGS.num_samples or datasets.get(dataset).eval_samples
            asked = inference.sampling_labels(architecture, num, FLAGS.seed)
            truncation = inference.run_truncation(architecture, FLAGS.truncation)
            pictures = eval_lib.sample_images(generator, num, FLAGS.seed, truncation, asked)
            source = checkpoint_source(architecture, step, truncation)
            # A --clusters generator is asked for clusters, not classes: nothing to check.
            labels = None if architecture.get("clusters") else asked
        source["dataset"] = dataset
        generated, floor = eval_lib.evaluate(pictures, dataset, FLAGS.data_dir, labels)
    except checkpoints.CheckpointError as e:
        cli.fail(f"--checkpoint_dir={FLAGS.checkpoint_dir}: {e}")
    except (ValueError, data.DataUnavailableError) as e:
        cli.fail(e)

    where = (source["images"] if FLAGS.images else
             f"{source['checkpoint_dir']} (step {source['step']}"
             + (f", truncation {source['truncation']:g})" if source["truncation"] else ")"))
    print(f"{len(pictures)} samples from {where}, {eval_lib.judged_as(dataset)}:")
    print(eval_lib.format_table(generated, floor, dataset))
    line = json.dumps({**source, "generated": generated, "real_floor": floor})
    print(line)
    write_json(line)


def checkpoint_source(architecture, step, truncation):
    """What the JSON line says of a checkpoint's samples: folder, step, architecture (its
    cluster_prior left out: up to 1,000 shares the checkpoint holds; and the run's
    truncation, which is not architecture), seed, the truncation they were drawn at."""
    shown = {k: v for k, v in architecture.items() if k not in ("cluster_prior", "truncation")}
    return {"checkpoint_dir": os.path.abspath(FLAGS.checkpoint_dir), "step": step,
            "architecture": shown, "seed": FLAGS.seed, "truncation": truncation}


def write_json(line):
    """Writes the JSON line to --json_out (atomically) when asked."""
    from gan import files

    if FLAGS.json_out:
        def write(tmp):
            with open(tmp, "w") as f:
                f.write(line + "\n")

        try:
            files.atomic_write(FLAGS.json_out, write)
        except OSError as e:  # checked before the work; e.g. its folder went away meanwhile
            cli.fail(f"--json_out={FLAGS.json_out}: {e.strerror or e}", exit_code=1)
        print(f"Wrote {FLAGS.json_out}")


def run():
    """Console entry point `gan-evaluate`, the same as `python -m gan.evaluate`."""
    cli.run(main, __name__)


if __name__ == "__main__":
    run()
