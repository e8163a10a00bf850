"""Draw digits from a trained generator.

  python -m gan.sample --checkpoint_dir=checkpoints --num=100 --out=samples.png

writes a grid of --num generated digits (10 x 10 here; 28x28 pixels each, 2 pixels apart)
from the newest checkpoint in --checkpoint_dir. With --npy it writes the raw float32 array
[num, 28, 28] in [0, 1] instead ([num, 28, 28, 3] for a Stacked MNIST generator;
--out=samples.npy). The same --seed gives the same digits. A run trained with
--truncation=t is sampled at t unless --truncation says otherwise (0 = off).
"""

import os

from absl import app, flags

from gan import cli

FLAGS = flags.FLAGS

flags.DEFINE_string("checkpoint_dir", "checkpoints",
                    "Folder of a training run's checkpoints (gan.train's --checkpoint_dir); "
                    "its newest checkpoint is used.")
flags.DEFINE_integer("num", 100, "How many digits to generate.")
flags.DEFINE_string("out", None,
                    "File to write: a PNG grid (default samples.png), or with --npy a .npy "
                    "array (default samples.npy).")
flags.DEFINE_bool("npy", False,
                  "Write the raw images as a NumPy .npy file (float32 [num, 28, 28], or "
                  "[num, 28, 28, 3] for a Stacked MNIST generator; values in [0, 1]) instead "
                  "of a PNG grid.")
flags.DEFINE_integer("cols", None, "Digits per row of the grid (default: a square-ish grid).")
flags.DEFINE_integer("digit", None,
                     "Class to draw (0-9); only for class-conditional models. An "
                     "unconditional checkpoint (such as --model=mlp) refuses it.")
flags.DEFINE_integer("seed", 0, "Seed of the noise: the same seed gives the same digits.")
cli.define_truncation_flag(__name__)


def check_flags():
    """Raises ValueError naming the first bad flag; returns the output path."""
    if FLAGS.num <= 0:
        raise ValueError(f"--num must be positive, got {FLAGS.num}")
    if FLAGS.cols is not None and FLAGS.cols <= 0:
        raise ValueError(f"--cols must be positive, got {FLAGS.cols}")
    if FLAGS.digit is not None and not 0 <= FLAGS.digit <= 9:
        raise ValueError(f"--digit must be 0-9, got {FLAGS.digit}")
    out = FLAGS.out or ("samples.npy" if FLAGS.npy else "samples.png")
    wanted = ".npy" if FLAGS.npy else ".png"
    if os.path.splitext(out)[1].lower() != wanted:
        raise ValueError(
            f"--out={out}: " + ("--npy writes a NumPy array; name it .npy" if FLAGS.npy else
                                "a PNG grid is written; name it .png (or pass --npy for .npy)"))
    from gan import files

    files.check_output_file(out, "out", (wanted,))
    return out


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        out = check_flags()
    except ValueError as e:
        cli.fail(e)
    import numpy as np  # after flag parsing: --help stays fast

    from gan import files, images
    from gan.models import inference, networks as models
    from gan.training import checkpoints

    try:
        generator, architecture, step = checkpoints.restore_generator(FLAGS.checkpoint_dir)
    except checkpoints.CheckpointError as e:
        cli.fail(f"--checkpoint_dir={FLAGS.checkpoint_dir}: {e}")
    if FLAGS.digit is not None and not models.is_conditional(architecture):
        cli.fail(f"--digit={FLAGS.digit}: the checkpoint in {FLAGS.checkpoint_dir} is "
                 f"unconditional (model '{architecture.get('model')}'): it cannot be asked for a "
                 "class. Leave out --digit, or train a class-conditional model.")
    if FLAGS.digit is not None and architecture.get("clusters"):
        cli.fail(f"--digit={FLAGS.digit}: the checkpoint in {FLAGS.checkpoint_dir} was trained "
                 "with --clusters, on k-means clusters, not digits: it cannot be asked for a "
                 "digit. Leave out --digit.")
    # --digit, else 0, 1, ..., 9, 0, ... (or clusters drawn with their sizes)
    labels = inference.sampling_labels(architecture, FLAGS.num, FLAGS.seed)
    if FLAGS.digit is not None:
        labels = np.full(FLAGS.num, FLAGS.digit)

    truncation = inference.run_truncation(architecture, FLAGS.truncation)
    noise = inference.sample_noise(FLAGS.num, architecture["noise_dim"], FLAGS.seed,
                                   truncation)
    samples = inference.generate(generator, noise, labels).numpy()
    try:
        if FLAGS.npy:
            files.atomic_write(out, lambda tmp: np.save(tmp, samples))
        else:
            pixels = inference.to_uint8(samples).numpy()
            images.save_png(images.grid(pixels, cols=FLAGS.cols), out)
    except OSError as e:
        cli.fail(f"--out={out}: {e.strerror or e}")
    drawn = f"seed {FLAGS.seed}" + (f", truncation {truncation:g}" if truncation else "")
    print(f"Wrote {FLAGS.num} images ({drawn}) from the step-{step} checkpoint "
          f"in {FLAGS.checkpoint_dir} to {out}.")


def run():
    """Console entry point `gan-sample`, the same as `python -m gan.sample`."""
    cli.run(main, __name__)


if __name__ == "__main__":
    run()
