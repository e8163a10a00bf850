"""Watching a run: TensorBoard summaries, the metrics history, progress lines, and the
animated GIF and loss plot made at the end.

All of it runs outside the compiled training loop, once per chunk of steps, from the metrics
the loop already gets back. Files, in the run's logs folder (TrainConfig.resolved_logs_dir(),
by default <checkpoint_dir>/logs):

  events.out.tfevents.*  TensorBoard: per chunk, at the step counter, the scalars d_loss,
                         g_loss, d_real, d_fake (D's mean output on real and fake images) and
                         steps_per_sec; the image strip `samples` at its epoch; and anything
                         else given to RunMonitor.write_scalars (e.g. evaluation figures).
  metrics.jsonl          the history: one JSON object per line, {"step": S, name: value, ...};
                         training chunks also hold "steps", the iterations they average. Flushed
                         line by line; on a resume, records past the restored step are dropped,
                         so the history has no duplicated or missing steps.
  losses.png             at the end of training: the curves of metrics.jsonl.
  progress.gif           at the end of training: the saved strips in epoch order.
"""

import io
import json
import os
import time

import numpy as np
import tensorflow as tf
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from gan import files, images

HISTORY_FILE = "metrics.jsonl"
HISTORY_WHAT = "the metrics history"  # what a full disk's message says was being written
EVENTS_WHAT = "the TensorBoard events"
LOSS_PLOT_FILE = "losses.png"
PROGRESS_GIF_FILE = "progress.gif"


# --- the metrics history ------------------------------------------------------------------


def read_history(path):
    """The records of a history file in order; [] if there is none. A torn last line (the
    process died while writing it) is ignored."""
    if not os.path.exists(path):
        return []
    records = []
    with open(path) as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                break  # only the last line can be torn: it is appended, then flushed
    return records


class HistoryFile:
    """Append-only JSON-lines history that survives resumes.

    Opening it at `resume_step` keeps only the records with step <= resume_step (rewritten
    atomically): those past it came from steps the restored checkpoint does not have and
    that the resumed run will redo.
    """

    def __init__(self, path, resume_step):
        self.path = path
        kept = [r for r in read_history(path) if r["step"] <= resume_step]
        files.atomic_write(path, lambda tmp: _write_lines(tmp, kept), what=HISTORY_WHAT)
        self._file = open(path, "a")

    def append(self, record):
        line = json.dumps(record) + "\n"
        with files.disk_full_as_error(HISTORY_WHAT, self.path, needed=len(line)):
            self._file.write(line)
            self._file.flush()

    def close(self):
        with files.disk_full_as_error(HISTORY_WHAT, self.path):
            self._file.close()  # closes the file also when its last flush fails


def _write_lines(path, records):
    with open(path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)


def plot_history(records, path):
    """PNG of the training curves over the step counter: d_loss and g_loss on top, D's mean
    output on real and fake images below. Records without d_loss (e.g. evaluations) are
    skipped."""
    train = [r for r in records if "d_loss" in r]
    if not train:
        raise ValueError("the history holds no training records to plot")
    steps = [r["step"] for r in train]
    figure = Figure(figsize=(8, 5), dpi=100)
    FigureCanvasAgg(figure)
    top, bottom = figure.subplots(2, 1, sharex=True)
    for ax, names, labels in ((top, ("d_loss", "g_loss"), ("D loss", "G loss")),
                              (bottom, ("d_real", "d_fake"), ("D(real)", "D(fake)"))):
        for name, label in zip(names, labels):
            ax.plot(steps, [r[name] for r in train], label=label, linewidth=1)
        ax.legend(loc="best")
        ax.grid(alpha=0.3)
    top.set_ylabel("BCE loss")
    bottom.set_ylabel("mean D output")
    bottom.set_ylim(0, 1)
    bottom.set_xlabel("iteration")
    figure.tight_layout()
    buffer = io.BytesIO()  # drawn first, so a full disk's message knows the size
    figure.savefig(buffer, format="png")
    files.write_bytes(path, buffer.getvalue(), what="the loss plot")


# --- progress lines -----------------------------------------------------------------------


def format_duration(seconds):
    """`H:MM:SS`, or `M:SS` under an hour."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """Progress lines at most every `every_secs` seconds, and one at the last step: epoch /
    total, percent, iterations per second since the previous line, time left at that rate,
    and the latest chunk's metrics. The first chunk, which includes compiling the loop, only
    starts the clock."""

    def __init__(self, total, start_step, every_secs, log=print):
        self.total, self.every_secs, self.log = total, every_secs, log
        self.last_step, self.last_time = start_step, None

    def update(self, step, scalars, now=None):
        """Called after each chunk with the step counter and the chunk's metrics."""
        now = time.time() if now is None else now
        started = self.last_time is not None
        if step < self.total and not (started and now - self.last_time >= self.every_secs):
            if not started:
                self.last_step, self.last_time = step, now
            return
        line = f"epoch {step}/{self.total} ({100 * step / self.total:.0f}%)"
        if started and now > self.last_time:
            rate = (step - self.last_step) / (now - self.last_time)
            left = (self.total - step) / max(rate, 1e-9)
            line += f"  {rate:.0f} it/s  eta {format_duration(left)}"
        self.log(line + "  " + "  ".join(f"{name}={value:.4f}"
                                         for name, value in scalars.items()))
        self.last_step, self.last_time = step, now


def _summary_row(strip):
    """A strip float [N, 28, 28] (or colour [N, 28, 28, 3]) as TensorBoard's image batch: one
    row, [1, H, W, 1] (or [1, H, W, 3])."""
    row = images.grid(np.asarray(strip, np.float32), cols=len(strip))
    return row[np.newaxis, ..., np.newaxis] if row.ndim == 2 else row[np.newaxis]


# --- everything together, as train() uses it -----------------------------------------------


class RunMonitor:
    """What a training run reports: TensorBoard events, the metrics history, progress lines
    (unless config.quiet), and at the end the GIF and loss plot. Use as a context manager
    (closing flushes the files)."""

    def __init__(self, config, start_step, log=print):
        self.logs_dir = config.resolved_logs_dir()
        self.image_dir = config.image_dir
        self.image_shape = config.image_shape
        self.total = config.epochs
        self.log = log
        self.history = HistoryFile(os.path.join(self.logs_dir, HISTORY_FILE), start_step)
        with self._events_guard():
            self.writer = tf.summary.create_file_writer(self.logs_dir, flush_millis=10_000)
        # Compiled once per set of names: eager tf.summary calls cost milliseconds of
        # Python each, which add up over a run. No tensor-dependent control flow, so no
        # autograph (its conversion only costs start-up time).
        self._scalar_summaries = tf.function(self._scalar_summaries_graph, autograph=False)
        self._image_summary = tf.function(self._image_summary_graph, autograph=False)
        self.progress = (None if config.quiet else
                         Progress(config.epochs, start_step, config.log_every_secs, log))
        self._last_step, self._last_time = start_step, time.time()

    def write_scalars(self, step, values, **fields):
        """Logs every `values` entry (name -> number) to TensorBoard at `step` and appends
        them, with `fields` (history only, e.g. steps=100), to the metrics history."""
        values = {name: float(value) for name, value in values.items()}
        with self._events_guard():
            self._scalar_summaries(tf.constant(step, tf.int64),
                                   {name: tf.constant(v, tf.float32) for name, v in values.items()})
        self.history.append({"step": int(step), **values, **fields})

    def _scalar_summaries_graph(self, step, values):
        with self.writer.as_default(step=step):
            for name, value in values.items():
                tf.summary.scalar(name, value)

    def _image_summary_graph(self, step, row):
        with self.writer.as_default(step=step):
            tf.summary.image("samples", row)

    def on_chunk(self, step, scalars, now=None):
        """After the loop ran up to step counter `step` (at time `now`, default: the time of
        the call): logs `scalars` (name -> float, the chunk's means) and the chunk's
        iterations per second, and prints progress when due. The training loop calls it on
        its writer thread, so it passes the time the chunk ended."""
        now = time.time() if now is None else now
        steps = step - self._last_step
        rate = steps / max(now - self._last_time, 1e-9)
        self.write_scalars(step, {**scalars, "steps_per_sec": rate}, steps=steps)
        self._last_step, self._last_time = step, now
        if self.progress is not None:
            self.progress.update(step, scalars, now)

    def on_strip(self, epoch, strip):
        """Logs the image strip of `epoch` (float [N, 28, 28] in [0, 1]) to TensorBoard as
        one row of digits."""
        with self._events_guard():
            self._image_summary(tf.constant(epoch, tf.int64), _summary_row(strip))

    def _events_guard(self):
        """A full disk while TensorBoard's writer writes (its buffer is flushed from within
        summary calls, as ResourceExhaustedError): files.DiskFullError."""
        return files.disk_full_as_error(EVENTS_WHAT, self.logs_dir)

    def prepare(self, metric_names, num_images):
        """Traces the TensorBoard functions that on_chunk (scalars `metric_names`) and
        on_strip (strips of `num_images`) call, without writing anything, so that their
        first calls do not take CPU from the training loop while it runs."""
        scalar = tf.TensorSpec([], tf.float32)
        self._scalar_summaries.get_concrete_function(
            tf.TensorSpec([], tf.int64),
            {name: scalar for name in (*metric_names, "steps_per_sec")})
        row = _summary_row(np.zeros((num_images, *self.image_shape), np.float32))
        self._image_summary.get_concrete_function(tf.TensorSpec([], tf.int64),
                                                  tf.TensorSpec(row.shape, tf.float32))

    def finish(self):
        """At the end of training, after close() (so every strip is on disk): progress.gif of
        the strips of epochs < total and losses.png of the history. Returns their paths (the
        GIF's is None without strips)."""
        strips = [path for epoch, path in images.list_strips(self.image_dir)
                  if epoch < self.total]
        gif = None
        if strips:
            gif = os.path.join(self.logs_dir, PROGRESS_GIF_FILE)
            images.save_gif(strips, gif)
        plot = os.path.join(self.logs_dir, LOSS_PLOT_FILE)
        plot_history(read_history(self.history.path), plot)
        return gif, plot

    def close(self):
        try:
            self.history.close()
        finally:
            with self._events_guard():
                self.writer.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
