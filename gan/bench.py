"""Speed benchmark: `python -m gan.bench`.

In one run, on the same data and machine, it measures
  1. steady-state iterations/s of this project's training loop and of the original's
     (Keras predict + two train_on_batch per iteration), and their ratio;
  2. the wall time of `python -m gan.train --epochs=10000` end to end (start-up, data, compile,
     training and all 100 image files), from a fresh checkpoint folder: the first run with
     an empty XLA compilation cache, the others loading the loop it compiled;
  3. images/s of the training loop at several batch sizes.
With --scaling it instead measures images/s on one device against --strategy=mirrored over
all local GPUs (or the --cpu_devices logical CPUs), at each --batch_sizes global batch.
Prints a table and one JSON line. Timings are of this machine at this moment: run it on an
otherwise idle machine and compare ratios, not absolute figures, across machines.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

from absl import flags, logging

from gan import cli, machine

flags.DEFINE_string("data_dir", None, "TFDS data folder (default: $TFDS_DATA_DIR, else "
                    "~/tensorflow_datasets).")
flags.DEFINE_integer("steps", 3000, "Timed iterations of this project's loop (after warm-up).")
flags.DEFINE_integer("original_steps", 300, "Timed iterations of the original loop.")
flags.DEFINE_list("batch_sizes", ["32", "128", "512", "1024"], "Batch sizes for images/s.")
flags.DEFINE_integer("batch_steps", 400, "Timed iterations per batch size.")
flags.DEFINE_bool("end_to_end", True, "Also time `python -m gan.train --epochs=10000`.")
flags.DEFINE_integer("e2e_epochs", 10000, "--epochs of the end-to-end run.")
flags.DEFINE_integer("e2e_runs", 4, "End-to-end runs, one after the other, sharing a fresh "
                     "XLA compilation cache: the first compiles the training loop, the others "
                     "load it, as reruns do. Reported: the first's time, and the median of the "
                     "others' (one run's wall time varies by seconds on a shared machine).")
flags.DEFINE_string("json_out", None, "Also write the results as JSON to this file.")
flags.DEFINE_bool("scaling", False,
                  "Only measure images/s of one device (with and without XLA) against "
                  "--strategy=mirrored over all local GPUs or the --cpu_devices logical CPUs.")
flags.DEFINE_integer("cpu_devices", 0, "With --scaling on a machine without GPUs: split the "
                     "CPU into this many logical devices for the mirrored run.")
FLAGS = flags.FLAGS


def time_project_loop(images, labels, batch_size, steps, steps_per_call=100, xla=True,
                      strategy=None):
    """Iterations/s of gan.training.loop's compiled multi-step loop on the real data stream
    (under the tf.distribute `strategy` if given, batch_size then being the global batch; XLA is
    only used without one, as in training)."""
    import tensorflow as tf

    from gan import config as config_lib
    from gan.datasets import load as data
    from gan.training import compilation, loop, step

    compilation.configure_cpu()  # as train() does
    state = step.create_state(config_lib.TrainConfig(batch_size=batch_size), strategy)
    multi_step = loop.make_multi_step(state, xla, strategy)
    stream = iter(data.make_batches(images, labels, batch_size, 0, 0, steps_per_call))
    zero, k = tf.constant(0), tf.constant(steps_per_call)
    multi_step(next(stream)[0], zero, k)  # compile
    calls = max(1, steps // steps_per_call)
    start = time.perf_counter()
    for _ in range(calls):
        out = multi_step(next(stream)[0], zero, k)
    float(out["d_loss"])  # wait for the last call
    return calls * steps_per_call / (time.perf_counter() - start)


def time_original_loop(images, steps):
    """Iterations/s of the original Keras loop (predict + train_on_batch x 2)."""
    from gan.training import original

    loop = original.OriginalLoop()
    real = images.astype("float32") / 255.0
    for _ in range(10):  # warm-up: Keras builds its train functions on first use
        loop.iteration(real)
    start = time.perf_counter()
    for _ in range(steps):
        loop.iteration(real)
    return steps / (time.perf_counter() - start)


def time_end_to_end(data_dir, epochs, xla_cache_dir):
    """Wall seconds of `python -m gan.train --epochs=N` in fresh folders, with XLA's
    compilation cache in xla_cache_dir; returns them and the number of image files."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "gan.train", f"--epochs={epochs}",
               f"--image_dir={tmp}/gan_images", f"--checkpoint_dir={tmp}/checkpoints",
               f"--xla_cache_dir={xla_cache_dir}"]
        if data_dir:
            cmd.append(f"--data_dir={data_dir}")
        start = time.perf_counter()
        result = subprocess.run(cmd, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if result.returncode != 0:
            raise RuntimeError(f"end-to-end run failed:\n{result.stderr[-2000:]}")
        num_images = len(os.listdir(f"{tmp}/gan_images"))
    return seconds, num_images


def end_to_end(results):
    """--e2e_runs end-to-end runs sharing a fresh XLA cache: the first compiles, the others
    load (their median is e2e_seconds; the first's time is e2e_cold_seconds)."""
    with tempfile.TemporaryDirectory() as cache:
        runs = [time_end_to_end(FLAGS.data_dir, FLAGS.e2e_epochs, cache)
                for _ in range(FLAGS.e2e_runs)]
    seconds = [s for s, _ in runs]
    loaded = seconds[1:] or seconds  # a single run is both the first and the median
    cached = sorted(loaded)
    results.update(e2e_seconds=cached[len(cached) // 2], e2e_cold_seconds=seconds[0],
                   e2e_all_seconds=seconds, e2e_epochs=FLAGS.e2e_epochs,
                   e2e_images=[n for _, n in runs])
    which = "run loading the loop from the XLA cache"
    if len(seconds) == 1:
        which = "run"
    elif len(cached) > 1:
        which = f"median of {len(cached)} runs loading the loop from the XLA cache"
    print(f"gan.train --epochs={FLAGS.e2e_epochs}: {results['e2e_seconds']:.1f} s wall "
          f"({which}: {', '.join(f'{s:.1f}' for s in loaded)}); "
          f"{seconds[0]:.1f} s the first time (compiling); {runs[0][1]} image files")


def scaling(images, labels, results, batch_sizes):
    """--scaling: images/s per global batch on one device (XLA and not) and mirrored."""
    from gan.training import distribute

    mirrored = distribute.make_strategy("mirrored")
    replicas = mirrored.num_replicas_in_sync
    results["devices"] = replicas
    results["scaling"] = {}
    print(f"images/s at each global batch; mirrored over {replicas} devices")
    print("batch  1 device, XLA  1 device, no XLA  mirrored")
    for batch in batch_sizes:
        row = [time_project_loop(images, labels, batch, FLAGS.batch_steps, xla=xla) * batch
               for xla in (True, False)]
        row.append(time_project_loop(images, labels, batch, FLAGS.batch_steps,
                                     strategy=mirrored) * batch)
        results["scaling"][batch] = dict(zip(("one_xla", "one", "mirrored"), row))
        print(f"{batch:5d}  {row[0]:13.0f}  {row[1]:16.0f}  {row[2]:8.0f}")


def check_flags():
    """Refuses (exit 2) a bad flag before the minutes of measuring; returns --batch_sizes as
    ints."""
    from gan import files

    if FLAGS.cpu_devices < 0:
        cli.fail(f"--cpu_devices must be 0 (off) or positive, got {FLAGS.cpu_devices}")
    for name in ("steps", "original_steps", "batch_steps", "e2e_epochs", "e2e_runs"):
        if FLAGS[name].value <= 0:
            cli.fail(f"--{name} must be positive, got {FLAGS[name].value}")
    try:
        batch_sizes = [int(size) for size in FLAGS.batch_sizes]
    except ValueError:
        batch_sizes = []
    if not batch_sizes or min(batch_sizes) <= 0:
        cli.fail(f"--batch_sizes must be positive whole numbers separated by commas, got "
                 f"'{','.join(FLAGS.batch_sizes)}'")
    try:
        files.check_data_dir(FLAGS.data_dir)
        if FLAGS.json_out:
            files.check_output_file(FLAGS.json_out, "json_out", (".json",))
    except ValueError as e:
        cli.fail(e)
    return batch_sizes


def main(argv):
    if len(argv) > 1:
        cli.fail(f"unexpected arguments: {' '.join(argv[1:])}")
    batch_sizes = check_flags()
    from gan.training import distribute

    logging.set_verbosity(logging.WARNING)  # tf.distribute's INFO lines would bury the table

    if FLAGS.cpu_devices:  # before TensorFlow initialises its devices
        distribute.configure_cpu_devices(FLAGS.cpu_devices)
    import tensorflow as tf

    from gan.datasets import load as data

    try:
        images, labels = data.load_split("mnist", "train", FLAGS.data_dir)
    except data.DataUnavailableError as e:
        cli.fail(e)
    results = {"machine": f"{os.cpu_count()} CPUs, TensorFlow {tf.__version__}, "
                          f"GPUs: {len(tf.config.list_physical_devices('GPU'))}",
               "recorded": machine.record(),
               "gpus": len(tf.config.list_physical_devices("GPU"))}
    print(f"machine: {results['machine']}")
    if FLAGS.scaling:
        scaling(images, labels, results, batch_sizes)
        return finish(results)

    results["project_it_per_s"] = time_project_loop(images, labels, 32, FLAGS.steps)
    print(f"this project's loop:  {results['project_it_per_s']:8.1f} it/s")
    results["original_it_per_s"] = time_original_loop(images, FLAGS.original_steps)
    print(f"original Keras loop:  {results['original_it_per_s']:8.1f} it/s")
    results["speedup"] = results["project_it_per_s"] / results["original_it_per_s"]
    print(f"speed-up:             {results['speedup']:8.1f}x")

    if FLAGS.end_to_end:
        end_to_end(results)

    results["images_per_s"] = {}
    print("batch  it/s    images/s")
    for batch in batch_sizes:
        rate = time_project_loop(images, labels, batch, FLAGS.batch_steps)
        results["images_per_s"][batch] = rate * batch
        print(f"{batch:5d}  {rate:6.1f}  {rate * batch:9.0f}")

    finish(results)


def finish(results):
    """Prints the results as one JSON line (and writes it to --json_out)."""
    line = json.dumps(results)
    print(line)
    if FLAGS.json_out:
        from gan.files import atomic_write

        try:
            atomic_write(FLAGS.json_out, lambda tmp: open(tmp, "w").write(line + "\n"))
        except OSError as e:  # checked before the run; e.g. its folder went away meanwhile
            cli.fail(f"--json_out={FLAGS.json_out}: {e.strerror or e}", exit_code=1)


def run():
    """Console entry point `gan-bench`, the same as `python -m gan.bench`."""
    cli.run(main, __name__)


if __name__ == "__main__":
    run()
