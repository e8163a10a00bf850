import glob
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import conftest
from gan import images
from gan.training import checkpoints, monitor, resume, run as train_lib
from gan.training import step as step_lib


tiny_config = conftest.tiny_configs(epochs=120, checkpoint_every=40, save_every=50, seed=7)


def read_events(logs_dir):
    """{tag: [steps]} of every summary in the TensorBoard event files of `logs_dir`."""
    tags = {}
    for path in sorted(glob.glob(os.path.join(logs_dir, "events.out.tfevents.*"))):
        for record in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                tags.setdefault(value.tag, []).append(event.step)
    return tags


def assert_contiguous(records, last_step):
    """Training records tile 0..last_step exactly: no duplicated or missing steps."""
    train = [r for r in records if "d_loss" in r]
    ends = [r["step"] for r in train]
    starts = [r["step"] - r["steps"] for r in train]
    assert starts[0] == 0 and ends[-1] == last_step
    assert starts[1:] == ends[:-1], list(zip(starts, ends))


# --- units --------------------------------------------------------------------------------


def test_history_reopened_at_a_step_drops_later_records_and_appends(tmp_path):
    path = str(tmp_path / "metrics.jsonl")
    history = monitor.HistoryFile(path, 0)
    for step in (10, 20, 30):
        history.append({"step": step, "d_loss": step / 10})
    history.close()
    history = monitor.HistoryFile(path, 20)  # resumed from a step-20 checkpoint
    history.append({"step": 25, "d_loss": 9.0})
    history.close()
    assert [r["step"] for r in monitor.read_history(path)] == [10, 20, 25]


def test_history_ignores_and_removes_a_torn_last_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "d_loss": 0.5}\n{"step": 2, "d_lo')
    assert monitor.read_history(str(path)) == [{"step": 1, "d_loss": 0.5}]
    history = monitor.HistoryFile(str(path), 10)
    history.append({"step": 3})
    history.close()
    assert [r["step"] for r in monitor.read_history(str(path))] == [1, 3]


def test_progress_prints_at_the_interval_and_at_the_end():
    lines = []
    progress = monitor.Progress(total=1000, start_step=0, every_secs=10, log=lines.append)
    progress.update(100, {"d_loss": 0.5}, now=100.0)  # first chunk: compiling, clock starts
    progress.update(200, {"d_loss": 0.5}, now=105.0)  # too soon
    assert lines == []
    progress.update(600, {"d_loss": 0.25, "g_loss": 2.0}, now=110.0)
    assert lines == ["epoch 600/1000 (60%)  50 it/s  eta 0:08  d_loss=0.2500  g_loss=2.0000"]
    progress.update(1000, {"d_loss": 0.125}, now=111.0)  # the last step always prints
    assert lines[-1] == "epoch 1000/1000 (100%)  400 it/s  eta 0:00  d_loss=0.1250"


def test_format_duration():
    assert monitor.format_duration(59.6) == "1:00"
    assert monitor.format_duration(3725) == "1:02:05"


def test_write_scalars_goes_to_tensorboard_and_the_history(tmp_path):
    with monitor.RunMonitor(tiny_config(tmp_path), 0, log=lambda s: None) as run:
        run.write_scalars(500, {"eval/classifier_score": 7.5, "eval/modes": 9})
        run.on_strip(499, np.random.default_rng(0).uniform(size=(10, 28, 28)))
    logs_dir = str(tmp_path / "ckpt" / "logs")
    assert read_events(logs_dir) == {"eval/classifier_score": [500], "eval/modes": [500],
                                     "samples": [499]}
    assert monitor.read_history(os.path.join(logs_dir, "metrics.jsonl")) == [
        {"step": 500, "eval/classifier_score": 7.5, "eval/modes": 9.0}]


def test_prepare_traces_the_summaries_without_writing_and_calls_reuse_them(tmp_path):
    metrics = ("d_loss", "g_loss", "d_real", "d_fake")
    with monitor.RunMonitor(tiny_config(tmp_path, quiet=True), 0, log=lambda s: None) as run:
        run.prepare(metrics, 10)
        assert run._scalar_summaries.experimental_get_tracing_count() == 1
        assert run._image_summary.experimental_get_tracing_count() == 1
        run.writer.flush()
        assert read_events(str(tmp_path / "ckpt" / "logs")) == {}
        run.on_chunk(100, {name: 0.5 for name in metrics})
        run.on_strip(99, np.random.default_rng(0).uniform(size=(10, 28, 28)))
        assert run._scalar_summaries.experimental_get_tracing_count() == 1
        assert run._image_summary.experimental_get_tracing_count() == 1
    assert read_events(str(tmp_path / "ckpt" / "logs")) == {
        **{name: [100] for name in (*metrics, "steps_per_sec")}, "samples": [99]}


def test_on_chunk_rates_use_the_times_the_chunks_ended(tmp_path):
    # The loop hands on_chunk to its writer thread with the time each chunk ended, so the
    # rate must come from those times, not from when the thread gets to it.
    with monitor.RunMonitor(tiny_config(tmp_path, quiet=True), 0, log=lambda s: None) as run:
        run._last_time = 1000.0
        run.on_chunk(100, {"d_loss": 0.5}, now=1000.5)
        run.on_chunk(150, {"d_loss": 0.4}, now=1001.5)
    records = monitor.read_history(str(tmp_path / "ckpt" / "logs" / "metrics.jsonl"))
    assert [(r["step"], r["steps"], r["steps_per_sec"]) for r in records] == [
        (100, 100, 200.0), (150, 50, 50.0)]


def test_plot_history_writes_a_png_and_needs_training_records(tmp_path):
    records = [{"step": s, "steps": 10, "d_loss": 0.7, "g_loss": 1.0, "d_real": 0.6,
                "d_fake": 0.4} for s in range(10, 60, 10)] + [{"step": 50, "eval/x": 1.0}]
    monitor.plot_history(records, str(tmp_path / "losses.png"))
    with Image.open(tmp_path / "losses.png") as im:
        assert im.format == "PNG" and im.size == (800, 500)
    with pytest.raises(ValueError, match="no training records"):
        monitor.plot_history([{"step": 50, "eval/x": 1.0}], str(tmp_path / "x.png"))


# --- a real (tiny) training run -----------------------------------------------------------


@pytest.mark.slow
def test_training_writes_tensorboard_history_gif_and_plot(tmp_path, data_dir):
    lines = []
    train_lib.train(tiny_config(tmp_path, data_dir, log_every_secs=0), log=lines.append)
    logs_dir = tmp_path / "ckpt" / "logs"
    tags = read_events(str(logs_dir))
    for name in ("d_loss", "g_loss", "d_real", "d_fake", "steps_per_sec"):
        assert max(tags[name]) == 120, name
    assert sorted(tags["samples"]) == [0, 50, 100]  # one strip per saved PNG, at its epoch
    assert_contiguous(monitor.read_history(str(logs_dir / "metrics.jsonl")), 120)
    with Image.open(logs_dir / "progress.gif") as gif:
        assert gif.n_frames == len(os.listdir(tmp_path / "images")) == 3
    with Image.open(logs_dir / "losses.png") as plot:
        assert plot.format == "PNG"
    assert any(line.startswith("epoch 120/120 (100%)") for line in lines)


def test_quiet_prints_no_progress_lines(tmp_path, data_dir):
    lines = []
    train_lib.train(tiny_config(tmp_path, data_dir, epochs=40, log_every_secs=0, quiet=True),
                    log=lines.append)
    assert lines and not any(line.startswith("epoch ") for line in lines)
    assert any(line.startswith("Done:") for line in lines)


@pytest.mark.slow
def test_history_survives_a_resume_after_a_lost_checkpoint(tmp_path, data_dir):
    train_lib.train(tiny_config(tmp_path, data_dir, epochs=100), log=lambda s: None)
    # As if the process died after logging steps 81-100 but before saving ckpt-100.
    for path in glob.glob(str(tmp_path / "ckpt" / "ckpt-100.*")):
        os.remove(path)
    lines = []
    train_lib.train(tiny_config(tmp_path, data_dir, epochs=120), log=lines.append)
    assert "Restored" in lines[0] and "ckpt-80" in lines[0]
    history = monitor.read_history(str(tmp_path / "ckpt" / "logs" / "metrics.jsonl"))
    assert_contiguous(history, 120)
    with Image.open(tmp_path / "ckpt" / "logs" / "progress.gif") as gif:
        assert gif.n_frames == 3  # strips 0 and 50 from the first run, 100 from the second


@pytest.mark.slow
def test_strips_after_a_resume_use_the_checkpointed_noise(tmp_path, data_dir):
    train_lib.train(tiny_config(tmp_path, data_dir, epochs=60), log=lambda s: None)
    # ckpt-60 rewritten with other fixed noise (seed 8's) than a fresh state draws (seed 7's).
    config = tiny_config(tmp_path, data_dir, epochs=101)
    state = step_lib.create_state(config)
    manager = checkpoints.make_manager(state, config.checkpoint_dir, 3)
    assert checkpoints.restore_latest(state, manager, resume.record(config)) == 60
    original = step_lib.create_state(tiny_config(tmp_path, seed=8)).fixed_noise.numpy()
    state.fixed_noise.assign(original)
    checkpoints.save(manager, 60)
    state = train_lib.train(config, log=lambda s: None)
    assert np.array_equal(state.fixed_noise.numpy(), original)
    assert not np.array_equal(step_lib.create_state(config).fixed_noise.numpy(), original)
    # generated_100.png was drawn after the last step, from the final weights.
    expected = images.StripRenderer(10).render(state.generator(original, training=False))
    with Image.open(images.image_path(config.image_dir, 100)) as strip:
        assert np.array_equal(np.asarray(strip), expected)
