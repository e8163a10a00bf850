"""gan.training.actions: the periodic work of a run, each action on its own.

Each action is driven here as the run drives it (gan.training.run._train): `next_due(step)`
says where the run must end a chunk, then `action(step, state, metrics)` after it. The
collaborators are real (a TrainState, a CheckpointManager, the strip renderer, the
evaluation) except the writer thread and the run monitor, which are fakes that record what
they were handed: what an action asks of them is what is under test here, and how they do
it is tested in test_images and test_monitor.
"""

import os
import signal
import time

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from gan import images
from gan.models import inference
from gan.training import actions, checkpoints, interrupts, loop
from gan.training import step as step_lib


class ImmediateWriter:
    """A BackgroundWriter that runs each job at once, in the calling thread, and records the
    jobs and the waits (in `calls`), so their order can be checked."""

    def __init__(self):
        self.calls = []

    def submit(self, fn, *args):
        self.calls.append(("submit", fn, args))
        fn(*args)

    def wait(self):
        self.calls.append(("wait",))


class RecordingMonitor:
    """The RunMonitor methods the actions call, each recording its arguments."""

    def __init__(self):
        self.prepared, self.chunks, self.strips, self.scalars = [], [], [], []

    def prepare(self, metric_names, num_images):
        self.prepared.append((tuple(metric_names), num_images))

    def on_chunk(self, step, scalars, now=None):
        self.chunks.append((step, scalars, now))

    def on_strip(self, epoch, strip):
        self.strips.append((epoch, strip))

    def write_scalars(self, step, values, **fields):
        self.scalars.append((step, values))


def chunk_metrics(finite=True, d_loss=0.5, g_loss=1.5, d_real=0.7, d_fake=0.3):
    """What one compiled chunk returns (gan.training.loop.make_multi_step): scalar tensors."""
    values = dict(d_loss=d_loss, g_loss=g_loss, d_real=d_real, d_fake=d_fake)
    return {"finite": tf.constant(finite), **{k: tf.constant(v, tf.float32)
                                              for k, v in values.items()}}


def saved_steps(directory):
    """The steps of the checkpoints in `directory`, oldest first."""
    return sorted(int(prefix.rsplit("-", 1)[1])
                  for prefix in checkpoints.list_checkpoints(directory))


@pytest.mark.parametrize("step,every,offset,expected", [
    (0, 100, 1, 1), (1, 100, 1, 101), (100, 100, 1, 101), (0, 1000, 0, 1000),
    (999, 1000, 0, 1000), (1000, 1000, 0, 2000)])
def test_next_boundary(step, every, offset, expected):
    assert actions.next_boundary(step, every, offset) == expected


def test_actions_without_a_cadence_of_their_own_never_end_a_chunk(tmp_path):
    # None: the run ends chunks only where another action is due (train_lib's min()).
    assert actions.Action().next_due(5) is None
    assert actions.NonFiniteGuard(str(tmp_path)).next_due(5) is None
    log = actions.LogMetrics(ImmediateWriter(), RecordingMonitor(), 10)
    assert log.next_due(0) is None
    assert actions.StopOnSignal(interrupts.StopRequest(), None, 10).next_due(3) is None


# --- NonFiniteGuard ----------------------------------------------------------------------


def test_non_finite_guard_passes_finite_chunks_and_stops_at_a_non_finite_one(state, tmp_path):
    guard = actions.NonFiniteGuard(str(tmp_path / "ckpt"))
    state.step.assign(11)
    assert guard(11, state, chunk_metrics()) is None  # finite: the run goes on
    with pytest.raises(actions.NonFiniteLossError) as error:
        guard(11, state, chunk_metrics(finite=False, d_loss=float("nan"), g_loss=2.0))
    message = str(error.value)
    # The loop stops after the bad iteration: counter 11 means epoch 10 went bad.
    assert "non-finite loss at epoch 10" in message
    assert "d_loss=nan" in message and "g_loss=2" in message
    assert str(tmp_path / "ckpt") in message  # where the last good checkpoint is


# --- WriteStrip -----------------------------------------------------------------------------


def make_write_strip(state, tmp_path, every, labels=None):
    writer, monitor = ImmediateWriter(), RecordingMonitor()
    renderer = images.StripRenderer(int(state.fixed_noise.shape[0]))
    strip = actions.WriteStrip(state, labels, str(tmp_path), every, writer, monitor, renderer)
    return strip, writer, monitor, renderer


def test_write_strip_writes_epoch_e_when_the_counter_reaches_e_plus_1(state, tmp_path):
    strip, writer, monitor, renderer = make_write_strip(state, tmp_path, every=3)
    # Due after iterations 0, 3, 6, ...: at step counters 1, 4, 7, ...
    assert [strip.next_due(step) for step in range(8)] == [1, 4, 4, 4, 7, 7, 7, 10]
    for step in range(1, 9):
        strip(step, state, chunk_metrics())
    assert [epoch for epoch, _ in monitor.strips] == [0, 3, 6]
    assert sorted(os.listdir(tmp_path)) == [f"generated_{e}.png" for e in (0, 3, 6)]
    # Each strip is the sampling generator's drawing of the fixed noise, rendered to the
    # image of its epoch and also handed to the monitor (TensorBoard).
    expected = inference.generate(step_lib.sampling_generator(state), state.fixed_noise).numpy()
    jobs = [(fn, args) for _, fn, args in writer.calls]
    assert [fn for fn, _ in jobs] == [renderer.save, monitor.on_strip] * 3
    for (_, (pixels, path)), epoch in zip(jobs[::2], (0, 3, 6)):
        assert path == images.image_path(str(tmp_path), epoch)
        np.testing.assert_allclose(pixels, expected, atol=1e-6)
    for _, drawn in monitor.strips:
        np.testing.assert_allclose(drawn, expected, atol=1e-6)
    with Image.open(images.image_path(str(tmp_path), 3)) as png:
        assert png.size == (1000, 100)  # the original's strip of 10 digits


def test_write_strip_draws_the_current_weights_and_the_asked_labels(tmp_path):
    from gan.config import TrainConfig

    state = step_lib.create_state(TrainConfig(seed=3, conditional=True))
    labels = np.arange(10, dtype=np.int32)
    strip, _, monitor, _ = make_write_strip(state, tmp_path, every=1, labels=labels)
    strip(1, state, chunk_metrics())
    for variable in state.generator.trainable_variables:  # as training would change them
        variable.assign(variable * 1.5 + 0.01)
    strip(2, state, chunk_metrics())
    generator = step_lib.sampling_generator(state)
    now = inference.generate(generator, state.fixed_noise, tf.constant(labels)).numpy()
    np.testing.assert_allclose(monitor.strips[1][1], now, atol=1e-6)
    assert not np.allclose(monitor.strips[0][1], now)  # not a strip traced once and kept
    other = inference.generate(generator, state.fixed_noise, tf.constant(labels[::-1])).numpy()
    assert not np.allclose(other, now)  # the labels matter, so the check above sees them


# --- LogMetrics -----------------------------------------------------------------------------


def test_log_metrics_prepares_the_monitor_and_logs_every_chunks_means(state):
    writer, monitor = ImmediateWriter(), RecordingMonitor()
    log = actions.LogMetrics(writer, monitor, 7)
    assert monitor.prepared == [(loop.METRICS, 7)]  # traced before the first chunk
    before = time.time()
    log(16, state, chunk_metrics(d_loss=0.25, g_loss=2.0, d_real=0.75, d_fake=0.125))
    log(32, state, chunk_metrics(d_loss=0.5))
    after = time.time()
    assert [fn for _, fn, _ in writer.calls] == [monitor.on_chunk] * 2  # on the writer thread
    (step, scalars, now), second = monitor.chunks
    assert step == 16 and scalars == dict(d_loss=0.25, g_loss=2.0, d_real=0.75, d_fake=0.125)
    assert all(type(value) is float for value in scalars.values())  # not tensors
    # The time the chunk ended, not when the writer thread gets to the job.
    assert before <= now <= second[2] <= after
    assert second[0] == 32 and second[1]["d_loss"] == 0.5


# --- SaveCheckpoint -------------------------------------------------------------------------


def run_saves(checkpoint, state, steps):
    for step in steps:
        state.step.assign(step)  # the loop's counter, which the save reads
        checkpoint(step, state, chunk_metrics())


def test_save_checkpoint_saves_every_n_steps_and_at_the_end(state, tmp_path):
    writer = ImmediateWriter()
    manager = checkpoints.make_manager(state, str(tmp_path), 10, log=lambda s: None)
    checkpoint = actions.SaveCheckpoint(manager, every=3, total=8, saved_step=0, writer=writer)
    assert [checkpoint.next_due(step) for step in range(7)] == [3, 3, 3, 6, 6, 6, 9]
    run_saves(checkpoint, state, range(1, 9))
    assert saved_steps(str(tmp_path)) == [3, 6, 8]  # 8: the last step, off the cadence
    assert checkpoint.saved_step == 8
    # The writer's pending jobs are done before each save.
    assert writer.calls == [("wait",)] * 3
    step = tf.Variable(0, dtype=state.step.dtype)
    checkpoints.read_parts(os.path.join(str(tmp_path), "ckpt-6"), step=step)
    assert int(step.numpy()) == 6  # ckpt-6 holds the state at counter 6


def test_save_checkpoint_refuses_non_finite_weights_and_writes_nothing(state, tmp_path):
    manager = checkpoints.make_manager(state, str(tmp_path), 10, log=lambda s: None)
    checkpoint = actions.SaveCheckpoint(manager, every=2, total=10, saved_step=0)
    run_saves(checkpoint, state, [1, 2])
    bad = state.discriminator.trainable_variables[0]
    bad.assign(tf.fill(bad.shape, float("nan")))
    assert not actions.state_is_finite(state)
    with pytest.raises(actions.NonFiniteLossError, match="became NaN or Inf by epoch 3"):
        run_saves(checkpoint, state, [3, 4])
    assert saved_steps(str(tmp_path)) == [2] and checkpoint.saved_step == 2


def test_state_is_finite_sees_optimizer_slots(state):
    assert actions.state_is_finite(state)
    # Adam's velocity of the generator's last bias: no weight, only a slot, goes bad.
    slot = [v for v in state.g_optimizer.variables if v.path.endswith("_velocity")][-1]
    slot.assign(tf.fill(slot.shape, float("inf")))
    assert not actions.state_is_finite(state)


def test_save_checkpoint_raises_a_failed_write_instead_of_saving(state, tmp_path):
    manager = checkpoints.make_manager(state, str(tmp_path), 10, log=lambda s: None)

    def lost_image():
        raise OSError("the strip could not be written")

    writer = images.BackgroundWriter()
    checkpoint = actions.SaveCheckpoint(manager, every=2, total=10, saved_step=0, writer=writer)
    writer.submit(lost_image)
    with pytest.raises(OSError, match="could not be written"):
        run_saves(checkpoint, state, [2])
    # No checkpoint claims the steps whose image is lost.
    assert saved_steps(str(tmp_path)) == [] and checkpoint.saved_step == 0
    with pytest.raises(OSError):  # the run's exit reports it too
        writer.close()


# --- Evaluate -------------------------------------------------------------------------------


def test_evaluate_runs_every_n_steps_and_logs_the_figures(state, data_dir):
    writer, monitor, lines = ImmediateWriter(), RecordingMonitor(), []
    evaluate = actions.Evaluate(2, 200, None, 0.0, data_dir, writer, monitor, lines.append)
    assert [evaluate.next_due(step) for step in range(5)] == [2, 2, 4, 4, 6]
    for step in range(1, 5):
        evaluate(step, state, chunk_metrics())
    assert [line.split()[3] for line in lines] == ["2", "4"]  # "eval at epoch <step> ..."
    assert lines[0].startswith("eval at epoch 2 (200 samples; [real floor]): ")
    assert "fd=" in lines[0] and "recall=" in lines[0]  # MNIST's figures, by the classifier
    assert [step for step, _ in monitor.scalars] == [2, 4]
    assert [fn for _, fn, _ in writer.calls] == [monitor.write_scalars] * 2
    scalars = monitor.scalars[0][1]
    assert {"eval/fd", "eval/kid", "eval/recall"} <= set(scalars)
    assert all(name.startswith("eval/") for name in scalars)
    assert 0 <= scalars["eval/recall"] <= 1 and scalars["eval/fd"] > 0
    # Always the same noise: the unchanged generator gets the same figures at both steps.
    assert monitor.scalars[1][1] == scalars
    # At the run's sampling truncation: other noise, so other figures, and the line says so.
    truncated = actions.Evaluate(2, 200, None, 1.0, data_dir, writer, monitor, lines.append)
    truncated(2, state, chunk_metrics())
    assert lines[-1].startswith("eval at epoch 2 (200 samples at truncation 1; [real floor]): ")
    assert monitor.scalars[-1][1] != scalars


# --- StopOnSignal ---------------------------------------------------------------------------


class RecordingCheckpoint:
    """A SaveCheckpoint's face to StopOnSignal: saved_step, manager.directory, save()."""

    def __init__(self, directory, saved_step):
        self.manager = type("Manager", (), {"directory": directory})()
        self.saved_step, self.saves = saved_step, []

    def save(self, state):
        self.saves.append(int(state.step.numpy()))
        self.saved_step = self.saves[-1]


def test_stop_on_signal_does_nothing_until_a_signal_was_requested(state, tmp_path):
    manager = checkpoints.make_manager(state, str(tmp_path), 10, log=lambda s: None)
    request = interrupts.StopRequest()
    checkpoint = actions.SaveCheckpoint(manager, every=100, total=50, saved_step=0)
    stop = actions.StopOnSignal(request, checkpoint, 50)
    state.step.assign(5)
    stop(5, state, chunk_metrics())
    assert saved_steps(str(tmp_path)) == []
    request.signum = signal.SIGTERM  # what the handler records (interrupts.stop_requested)
    state.step.assign(7)
    with pytest.raises(interrupts.Interrupted) as error:
        stop(7, state, chunk_metrics())
    assert saved_steps(str(tmp_path)) == [7]  # the current step, saved before stopping
    assert error.value.signum == signal.SIGTERM and error.value.step == 7
    assert error.value.exit_code == 143
    assert str(error.value) == (
        f"stopped by SIGTERM at epoch 7 (checkpoint {os.path.join(str(tmp_path), 'ckpt-7')} "
        "holds it); run the same command to resume. Exit code 143.")


def test_stop_on_signal_saves_only_what_is_not_saved_yet(state, tmp_path):
    request = interrupts.StopRequest()
    request.signum = signal.SIGINT
    state.step.assign(20)
    checkpoint = RecordingCheckpoint(str(tmp_path), saved_step=20)
    with pytest.raises(interrupts.Interrupted) as error:
        actions.StopOnSignal(request, checkpoint, 50)(20, state, chunk_metrics())
    assert checkpoint.saves == []  # ckpt-20 is the newest already
    assert error.value.exit_code == 130 and "stopped by SIGINT at epoch 20" in str(error.value)

    state.step.assign(0)
    checkpoint = RecordingCheckpoint(str(tmp_path), saved_step=0)
    with pytest.raises(interrupts.Interrupted, match="nothing trained yet, nothing saved"):
        actions.StopOnSignal(request, checkpoint, 50)(0, state, chunk_metrics())
    assert checkpoint.saves == []


def test_a_signal_during_the_last_chunk_lets_the_run_finish(state, tmp_path):
    request = interrupts.StopRequest()
    request.signum = signal.SIGTERM
    checkpoint = RecordingCheckpoint(str(tmp_path), saved_step=40)
    stop = actions.StopOnSignal(request, checkpoint, 50)
    state.step.assign(50)
    assert stop(50, state, chunk_metrics()) is None  # SaveCheckpoint saves the end
    assert checkpoint.saves == []
    state.step.assign(49)
    with pytest.raises(interrupts.Interrupted):  # one step short of the end: it stops
        stop(49, state, chunk_metrics())
    assert checkpoint.saves == [49]
