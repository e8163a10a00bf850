import json

import numpy as np
import pytest

from gan import checkpoints, train_lib
from gan.config import TrainConfig


def tiny_config(tmp_path, data_dir, **overrides):
    values = dict(epochs=120, checkpoint_every=40, save_every=50, steps_per_call=16,
                  data_dir=data_dir, image_dir=str(tmp_path / "images"),
                  checkpoint_dir=str(tmp_path / "ckpt"), log_every_secs=1e9, seed=7)
    values.update(overrides)
    return TrainConfig(**values)


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
    fresh = train_lib.create_state(config)
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


def test_restore_generator_reads_the_saved_generator(generator_checkpoint):
    folder, weights = generator_checkpoint
    generator, architecture, step = checkpoints.restore_generator(folder)
    assert architecture == json.loads(TrainConfig().architecture())  # the defaults
    assert architecture["model"] == "mlp" and architecture["noise_dim"] == 100
    assert step == 5
    for restored, saved in zip(generator.get_weights(), weights):
        assert np.array_equal(restored, saved)


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
