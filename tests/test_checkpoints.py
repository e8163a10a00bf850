import json
import os
import shutil

import numpy as np
import pytest

import conftest
from conftest import file_snapshot
from gan.models import inference
from gan.training import actions, checkpoints, run as train_lib
from gan.training import step as step_lib
from gan.config import TrainConfig

tiny_config = conftest.tiny_configs(epochs=120, checkpoint_every=40, save_every=50, seed=7)


def state_arrays(state):
    """Every variable the checkpoint holds, in a fixed order: weights, slots, step, RNG."""
    out = {}
    for group in ("generator", "discriminator", "g_optimizer", "d_optimizer"):
        for i, v in enumerate(getattr(state, group).variables):
            out[f"{group}/{i}"] = v.numpy()
    out["step"] = state.step.numpy()
    out["rng"] = state.rng.state.numpy()
    return out


def assert_states_equal(a, b):
    a, b = state_arrays(a), state_arrays(b)
    assert a.keys() == b.keys()
    for name in a:
        assert np.array_equal(a[name], b[name]), name


def test_resumed_run_ends_bit_identical_to_an_uninterrupted_one(tmp_path, data_dir):
    straight = train_lib.train(tiny_config(tmp_path / "a", data_dir), log=lambda s: None)

    logs = []
    train_lib.train(tiny_config(tmp_path / "b", data_dir, epochs=80), log=logs.append)
    resumed = train_lib.train(tiny_config(tmp_path / "b", data_dir), log=logs.append)
    assert any("Resuming from step 80" in line for line in logs)
    assert int(resumed.step.numpy()) == 120
    assert_states_equal(straight, resumed)


def test_restore_gives_the_saved_weights_and_optimizer_state(tmp_path, data_dir):
    config = tiny_config(tmp_path, data_dir, epochs=40)
    trained = train_lib.train(config, log=lambda s: None)
    fresh = step_lib.create_state(config)
    manager = checkpoints.make_manager(fresh, config.checkpoint_dir, 3)
    assert checkpoints.restore_latest(fresh, manager, config.architecture(), log=print) == 40
    assert_states_equal(trained, fresh)
    assert int(fresh.g_optimizer.iterations.numpy()) == 40


def test_rerun_after_completion_trains_nothing(tmp_path, data_dir):
    config = tiny_config(tmp_path, data_dir, epochs=40)
    train_lib.train(config, log=lambda s: None)
    logs = []
    state = train_lib.train(config, log=logs.append)
    assert int(state.step.numpy()) == 40
    assert any("nothing to do" in line for line in logs)


def test_list_checkpoints_newest_first(tmp_path):
    for step in (5, 100, 20):
        (tmp_path / f"ckpt-{step}.index").write_bytes(b"")
    (tmp_path / "ckpt-7.tmp").write_bytes(b"")
    assert [p.rsplit("-", 1)[1] for p in checkpoints.list_checkpoints(str(tmp_path))] == [
        "100", "20", "5"]


def test_other_architecture_is_refused(tmp_path, data_dir):
    config = tiny_config(tmp_path, data_dir, epochs=40)
    train_lib.train(config, log=lambda s: None)
    other = tiny_config(tmp_path, data_dir, epochs=80, noise_dim=64)
    with pytest.raises(checkpoints.CheckpointError, match="different configuration"):
        train_lib.train(other, log=lambda s: None)
    assert checkpoints.list_checkpoints(config.checkpoint_dir)[0].endswith("ckpt-40")


# --- damaged checkpoints, other configurations, NaN weights ------------------------------


@pytest.fixture(scope="module")
def trained_80(tmp_path_factory, data_dir):
    """A run to epoch 80 with checkpoints at 40 and 80, to copy and damage."""
    folder = tmp_path_factory.mktemp("trained_80")
    train_lib.train(tiny_config(folder, data_dir, epochs=80), log=lambda s: None)
    return folder


def copy_of(trained, tmp_path):
    shutil.copytree(trained, tmp_path, dirs_exist_ok=True)
    return str(tmp_path / "ckpt")


def truncate(path, fraction=0.5):
    with open(path, "r+b") as f:
        f.truncate(int(os.path.getsize(path) * fraction))


class DataTouched(Exception):
    """Raised by the data loading functions a refused run must never reach."""


def refuse_to_load(name):
    def load(*args, **kwargs):
        raise DataTouched(f"data.{name} was called before the refusal")
    return load


DAMAGES = {
    "truncated data": lambda p: truncate(p + ".data-00000-of-00001"),
    "empty data": lambda p: truncate(p + ".data-00000-of-00001", 0),
    "missing data": lambda p: os.remove(p + ".data-00000-of-00001"),
    "missing index": lambda p: os.remove(p + ".index"),
    "garbage index": lambda p: open(p + ".index", "wb").write(b"not an index" * 10),
}


def restore_into_fresh_state(config, logs):
    state = step_lib.create_state(config)
    manager = checkpoints.make_manager(state, config.checkpoint_dir, config.keep_checkpoints,
                                       log=logs.append)
    return checkpoints.restore_latest(state, manager, config.architecture(), log=logs.append)


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_one(
        trained_80, tmp_path, damage):
    ckpt = copy_of(trained_80, tmp_path)
    DAMAGES[damage](os.path.join(ckpt, "ckpt-80"))
    files = sorted(os.listdir(ckpt))
    logs = []
    assert restore_into_fresh_state(tiny_config(tmp_path, None), logs) == 40
    assert any("WARNING: skipped damaged checkpoint" in line and "ckpt-80" in line
               for line in logs), logs
    assert sorted(os.listdir(ckpt)) == files  # nothing deleted, nothing renamed


@pytest.mark.parametrize("content", [b"", b"garbage {{{", b"\x00\xff\xfe\x89"],
                         ids=["empty", "text", "binary"])
def test_a_damaged_state_file_is_set_aside_and_the_newest_checkpoint_used(
        trained_80, tmp_path, content):
    ckpt = copy_of(trained_80, tmp_path)
    (tmp_path / "ckpt" / "checkpoint").write_bytes(content)
    logs = []
    assert restore_into_fresh_state(tiny_config(tmp_path, None), logs) == 80
    backups = [n for n in os.listdir(ckpt) if n.startswith("checkpoint.corrupt-")]
    assert len(backups) == 1 and (tmp_path / "ckpt" / backups[0]).read_bytes() == content
    assert any("WARNING" in line and backups[0] in line for line in logs), logs
    assert checkpoints.list_checkpoints(ckpt) == [os.path.join(ckpt, "ckpt-80"),
                                                  os.path.join(ckpt, "ckpt-40")]


def test_after_a_fallback_training_ends_bit_identical_and_keeps_good_checkpoints(
        trained_80, tmp_path, data_dir):
    straight = train_lib.train(tiny_config(tmp_path / "straight", data_dir), log=lambda s: None)
    ckpt = copy_of(trained_80, tmp_path / "damaged")
    truncate(os.path.join(ckpt, "ckpt-80.data-00000-of-00001"))
    (tmp_path / "damaged" / "ckpt" / "checkpoint").write_bytes(b"")
    logs = []
    resumed = train_lib.train(tiny_config(tmp_path / "damaged", data_dir, keep_checkpoints=2),
                              log=logs.append)
    assert any("Resuming from step 40" in line for line in logs)
    assert_states_equal(straight, resumed)
    # ckpt-40 (never in the new rotation list) stays; ckpt-80 was rewritten whole.
    assert checkpoints.list_checkpoints(ckpt) == [
        os.path.join(ckpt, f"ckpt-{s}") for s in (120, 80, 40)]
    fresh_logs = []
    assert restore_into_fresh_state(tiny_config(tmp_path / "damaged", data_dir),
                                    fresh_logs) == 120
    assert not any("WARNING" in line for line in fresh_logs)


def test_all_checkpoints_damaged_stops_instead_of_starting_over(trained_80, tmp_path,
                                                                monkeypatch):
    from gan.datasets import load as data

    ckpt = copy_of(trained_80, tmp_path)
    for step in (40, 80):
        truncate(os.path.join(ckpt, f"ckpt-{step}.data-00000-of-00001"))
    for name in ("load_split", "ensure_available"):  # it stops before reading data
        monkeypatch.setattr(data, name, refuse_to_load(name))
    before = file_snapshot(tmp_path)
    with pytest.raises(checkpoints.CheckpointError, match="none could be restored") as err:
        train_lib.train(tiny_config(tmp_path, None), log=lambda s: None)
    assert "ckpt-40" in str(err.value) and "ckpt-80" in str(err.value)
    assert file_snapshot(tmp_path) == before


@pytest.mark.parametrize("change", [dict(noise_dim=64), dict(dataset="fashion_mnist")])
def test_another_configuration_is_refused_before_loading_data_and_changes_nothing(
        trained_80, tmp_path, monkeypatch, change):
    from gan.datasets import load as data

    copy_of(trained_80, tmp_path)
    # A data folder with no data at all, and loading any fails the test: the refusal must
    # come from the checkpoint's configuration alone, before any data is read.
    (tmp_path / "no_data").mkdir()
    for name in ("load_split", "ensure_available"):
        monkeypatch.setattr(data, name, refuse_to_load(name))
    before = file_snapshot(tmp_path)
    with pytest.raises(checkpoints.CheckpointError, match="different configuration") as err:
        train_lib.train(tiny_config(tmp_path, str(tmp_path / "no_data"), epochs=200, **change),
                        log=lambda s: None)
    name, value = next(iter(change.items()))
    assert f'"{name}": {json.dumps(value)}' in str(err.value)
    assert file_snapshot(tmp_path) == before


def test_a_nan_weight_is_never_saved(tmp_path):
    config = tiny_config(tmp_path, None)  # no training: no data
    state = step_lib.create_state(config)
    manager = checkpoints.make_manager(state, config.checkpoint_dir, 3)
    slot = state.d_optimizer.variables[-1]
    slot.assign(np.full(slot.shape, np.inf, np.float32))
    with pytest.raises(actions.NonFiniteLossError, match="NaN or Inf"):
        actions.SaveCheckpoint(manager, 1000, 1000, 0).save(state)
    assert checkpoints.list_checkpoints(config.checkpoint_dir) == []


def test_a_resumed_run_uses_the_learning_rates_it_is_given(tmp_path, data_dir):
    train_lib.train(tiny_config(tmp_path, data_dir, epochs=40), log=lambda s: None)
    logs = []
    state = train_lib.train(tiny_config(tmp_path, data_dir, epochs=41, d_learning_rate=2e-4),
                            log=logs.append)
    assert float(state.d_optimizer.learning_rate.numpy()) == np.float32(2e-4)
    assert float(state.g_optimizer.learning_rate.numpy()) == np.float32(1e-3)
    assert any("--d_learning_rate=0.0002 replaces the checkpoint's 0.001" in line
               for line in logs), logs


def test_restore_generator_reads_the_saved_generator(generator_checkpoint):
    folder, weights = generator_checkpoint
    generator, architecture, step = checkpoints.restore_generator(folder)
    assert architecture == json.loads(TrainConfig().architecture())  # the defaults
    assert architecture["model"] == "mlp" and architecture["noise_dim"] == 100
    assert step == 5
    for restored, saved in zip(generator.get_weights(), weights):
        assert np.array_equal(restored, saved)


def test_restore_generator_says_how_the_run_samples(generator_checkpoint, truncated_checkpoint):
    """A run's sampling --truncation comes back with its architecture (not part of it)."""
    _, architecture, _ = checkpoints.restore_generator(truncated_checkpoint[0])
    assert architecture == dict(json.loads(TrainConfig().architecture()), truncation=0.7)
    assert inference.run_truncation(architecture) == 0.7
    _, untruncated, _ = checkpoints.restore_generator(generator_checkpoint[0])
    assert inference.run_truncation(untruncated) == 0.0


def test_restore_generator_skips_a_damaged_newest_checkpoint(tmp_path, generator_checkpoint):
    import shutil

    folder, weights = generator_checkpoint
    shutil.copytree(folder, tmp_path / "c")
    (tmp_path / "c" / "ckpt-9.index").write_bytes(b"garbage")
    (tmp_path / "c" / "ckpt-9.data-00000-of-00001").write_bytes(b"garbage")
    generator, _, step = checkpoints.restore_generator(str(tmp_path / "c"))
    assert step == 5
    assert np.array_equal(generator.get_weights()[0], weights[0])


@pytest.mark.parametrize("make,message", [
    (lambda p: None, "does not exist"),
    (lambda p: p.mkdir(), "holds no checkpoint"),
])
def test_restore_generator_errors_name_the_folder(tmp_path, make, message):
    folder = tmp_path / "run"
    make(folder)
    with pytest.raises(checkpoints.CheckpointError, match=message) as info:
        checkpoints.restore_generator(str(folder))
    assert str(folder) in str(info.value)


def test_restore_generator_with_only_damaged_checkpoints_fails(tmp_path):
    (tmp_path / "ckpt-3.index").write_bytes(b"garbage")
    with pytest.raises(checkpoints.CheckpointError, match="could be restored"):
        checkpoints.restore_generator(str(tmp_path))
