"""The periodic work of a training run, one small action each.

The run calls `for action in actions: action(step, state, metrics)` after every compiled
chunk, where `step` is the step counter after the chunk and `metrics` the chunk's output
(gan.training.loop.make_multi_step). Each action owns its cadence: `next_due(step)` is the next step
counter it must see, so the run ends each chunk there; an action with no cadence of its own
(NonFiniteGuard, LogMetrics, StopOnSignal) acts after every chunk.
"""

import json
import os
import time

import numpy as np
import tensorflow as tf

from gan import images
from gan.evaluation import evaluator as eval_lib
from gan.models import inference
from gan.training import checkpoints, interrupts, loop, step as step_lib


class NonFiniteLossError(RuntimeError):
    """A loss (or a weight) became NaN or Inf; no checkpoint of the bad weights was written."""


def next_boundary(step, every, offset=0):
    """The smallest step counter > step with (counter - offset) % every == 0."""
    return step + every - ((step - offset) % every)


class Action:
    """Runs after every chunk unless a subclass sets a cadence."""

    def next_due(self, step):
        return None  # no boundary of its own


class NonFiniteGuard(Action):
    """Stops the run at the first NaN/Inf loss, before anything of that chunk is saved."""

    def __init__(self, checkpoint_dir):
        self.checkpoint_dir = checkpoint_dir

    def __call__(self, step, state, metrics):
        if not bool(metrics["finite"]):
            bad = int(state.step.numpy()) - 1  # the loop stops after the bad iteration
            raise NonFiniteLossError(
                f"non-finite loss at epoch {bad} (d_loss={float(metrics['d_loss']):.4g}, "
                f"g_loss={float(metrics['g_loss']):.4g}); stopped without saving it. "
                f"The last good checkpoint is kept in {self.checkpoint_dir}.")


class WriteStrip(Action):
    """The original's image strip: after iteration e (step counter e + 1) for every e that
    is a multiple of `every`, the sampling generator draws `fixed_noise` [N, Z] and the
    strip goes to <image_dir>/generated_<e>.png and TensorBoard on the writer thread."""

    def __init__(self, state, labels, image_dir, every, writer, run_monitor, renderer):
        generator = step_lib.sampling_generator(state)
        labels = None if labels is None else tf.constant(labels)
        # Compiled: an eager Keras call costs several times a graph call, once per strip.
        self.generate = tf.function(lambda z: inference.generate(generator, z, labels),
                                    autograph=False)  # plain calls, nothing to convert
        self.generate(state.fixed_noise)  # traced now, not during the first chunk
        self.image_dir, self.every = image_dir, every
        self.writer, self.run_monitor, self.renderer = writer, run_monitor, renderer

    def next_due(self, step):
        return next_boundary(step, self.every, offset=1)

    def __call__(self, step, state, metrics):
        if (step - 1) % self.every:
            return
        # Drawn before LogMetrics wakes the writer thread: on 2 cores the generator call
        # then has the other core to itself.
        strip = self.generate(state.fixed_noise).numpy()
        self.writer.submit(self.renderer.save, strip, images.image_path(self.image_dir, step - 1))
        self.writer.submit(self.run_monitor.on_strip, step - 1, strip)


class LogMetrics(Action):
    """The chunk's mean losses and speed to the metrics history, TensorBoard and the progress
    line, on the writer thread."""

    def __init__(self, writer, run_monitor, num_images):
        self.writer, self.run_monitor = writer, run_monitor
        run_monitor.prepare(loop.METRICS, num_images)

    def __call__(self, step, state, metrics):
        scalars = {name: float(metrics[name]) for name in loop.METRICS}
        self.writer.submit(self.run_monitor.on_chunk, step, scalars, time.time())


class SaveCheckpoint(Action):
    """ckpt-<step> every `every` steps and at `total`. A loss can stay finite for the step
    whose update made a weight NaN, so the weights are checked first: a NaN/Inf anywhere
    raises NonFiniteLossError and nothing is written. With a `writer` (an
    images.BackgroundWriter) its pending jobs are done first, and a failed one (e.g. a full
    disk) is raised instead of the save: no checkpoint claims steps whose files are lost.
    A full disk during the save itself raises files.DiskFullError
    (gan.training.checkpoints.save)."""

    def __init__(self, manager, every, total, saved_step, writer=None):
        self.manager, self.every, self.total = manager, every, total
        self.saved_step = saved_step  # the step of the newest checkpoint
        self.writer = writer

    def next_due(self, step):
        return next_boundary(step, self.every)

    def __call__(self, step, state, metrics=None):
        if step % self.every == 0 or step == self.total:
            self.save(state)

    def save(self, state):
        step = int(state.step.numpy())
        if not state_is_finite(state):
            raise NonFiniteLossError(
                f"a weight or optimizer value became NaN or Inf by epoch {step - 1}; stopped "
                f"without saving it. The last good checkpoint is kept in "
                f"{self.manager.directory}.")
        if self.writer is not None:
            self.writer.wait()
        checkpoints.save(self.manager, step)
        self.saved_step = step


def state_is_finite(state):
    """True if every float variable of both networks and both optimizers (slots) is finite."""
    variables = (state.generator.variables + state.discriminator.variables
                 + state.g_optimizer.variables + state.d_optimizer.variables)
    for variable in variables:
        value = np.asarray(variable.numpy())
        if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
            return False
    return True


class Evaluate(Action):
    """Every `every` steps: the metrics of gan.evaluate on `num_samples` samples (drawn at
    the run's sampling `truncation`), logged with the real floor and written to the history
    and TensorBoard."""

    def __init__(self, every, num_samples, labels, truncation, data_dir, writer, run_monitor,
                 log):
        self.every, self.num_samples, self.labels = every, num_samples, labels
        self.truncation = truncation
        self.data_dir, self.writer, self.run_monitor, self.log = data_dir, writer, run_monitor, log

    def next_due(self, step):
        return next_boundary(step, self.every)

    def __call__(self, step, state, metrics):
        if step % self.every:
            return
        # The run's --dataset, as its state records it: it picks the judging classifier.
        dataset = eval_lib.checkpoint_dataset(json.loads(state.architecture.numpy()))
        scalars, line = eval_lib.training_eval(step_lib.sampling_generator(state), step,
                                               self.num_samples, self.data_dir, self.labels,
                                               dataset, self.truncation)
        self.log(line)
        self.writer.submit(self.run_monitor.write_scalars, step, scalars)


class StopOnSignal(Action):
    """After SIGINT/SIGTERM: a checkpoint of the current step (unless it is the newest
    already), then interrupts.Interrupted, whose message says where the run stopped. A
    signal during the last chunk lets the run finish."""

    def __init__(self, request, checkpoint, total):
        self.request, self.checkpoint, self.total = request, checkpoint, total

    def __call__(self, step, state, metrics):
        if not self.request or step >= self.total:
            return
        if step != self.checkpoint.saved_step:
            self.checkpoint.save(state)
        directory = self.checkpoint.manager.directory
        where = (f"checkpoint {os.path.join(directory, f'ckpt-{step}')} holds it"
                 if step else "nothing trained yet, nothing saved")
        code = interrupts.exit_code(self.request.signum)
        raise interrupts.Interrupted(
            self.request.signum, step,
            f"stopped by {self.request.name} at epoch {step} ({where}); run the same command "
            f"to resume. Exit code {code}.")
