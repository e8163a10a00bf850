"""Resuming with changed flags (gan.training.resume): each flag either gives what the README says or
is refused naming it; checkpoints without the run-settings record resume as before."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import conftest
from conftest import REPO, checkpoint_tensors, file_snapshot
from gan.training import checkpoints, resume, run as train_lib
from gan.training import step as step_lib
from gan.config import TrainConfig

def check(old, new):
    """resume.check of a checkpoint made with TrainConfig(**old) resumed with **new."""
    return resume.check(resume.record(TrainConfig(**old)), resume.record(TrainConfig(**new)))


@pytest.mark.parametrize("flag, old, new", [("seed", 7, 8), ("batch_size", 32, 64),
                                            ("d_steps", 1, 2), ("num_images", 10, 16)])
def test_settings_that_change_the_data_or_the_strips_are_refused_naming_the_flag(flag, old,
                                                                                  new):
    problems, notes = check({flag: old}, {flag: new})
    assert len(problems) == 1 and notes == []
    assert problems[0].startswith(f"--{flag}={new} here, --{flag}={old} in the checkpoint: ")


@pytest.mark.parametrize("old, new, named", [
    ({"dataset": "mnist"}, {"dataset": "fashion_mnist"},
     "--dataset=fashion_mnist here, --dataset=mnist in the checkpoint"),
    ({}, {"ema": True}, "--ema here, --noema in the checkpoint"),
    ({}, {"mixed_precision": True}, "--mixed_precision here, --nomixed_precision in the"),
    ({"model": "mlp"}, {"model": "dcgan"}, "--model=dcgan here, --model=mlp in the"),
])
def test_another_architecture_is_refused_naming_the_flag(old, new, named):
    problems, _ = check(old, new)
    assert len(problems) == 1 and problems[0].startswith(named)


def test_hyperparameters_apply_from_the_resumed_step_and_are_logged():
    old = dict(loss="wgan-gp", ema=True)
    problems, notes = check(old, dict(old, gp_weight=5.0, ema_decay=0.99, beta_1=0.5,
                                      diversity=0.5))
    assert problems == []
    assert notes == ["--beta_1=0.5 replaces the checkpoint's 0.9.",  # in the fields' order
                     "--gp_weight=5 replaces the checkpoint's 10.",
                     "--ema_decay=0.99 replaces the checkpoint's 0.999.",
                     "--diversity=0.5 replaces the checkpoint's 0."]
    # Without --loss=wgan-gp and --ema they do nothing, and are not recorded.
    assert check({}, dict(gp_weight=5.0, ema_decay=0.99)) == ([], [])


def test_the_sampling_truncation_is_recorded_and_a_change_applies_with_a_note():
    """--truncation says how the generator is sampled, not what is trained: recorded for
    gan.evaluate and gan.sample, and a resumed run may change it."""
    assert json.loads(resume.record(TrainConfig(truncation=1.5)))["run"]["truncation"] == 1.5
    assert check({}, {"truncation": 1.9}) == ([], ["--truncation=1.9 replaces the checkpoint's 0."])
    assert check({"truncation": 1.9}, {}) == ([], ["--truncation=0 replaces the checkpoint's 1.9."])
    # a checkpoint made before the setting existed: unknown, accepted
    old = json.loads(resume.record(TrainConfig()))
    del old["run"]["truncation"]
    assert resume.check(json.dumps(old), resume.record(TrainConfig(truncation=1.9))) == ([], [])


@pytest.mark.parametrize("old, new, note", [
    ({}, {"xla": False}, "drew its noise with XLA, this one with plain TensorFlow"),
    ({}, {"strategy": "mirrored"}, "drew its noise with XLA, this one with plain TensorFlow"),
    ({"xla": False}, {}, "drew its noise with plain TensorFlow, this one with XLA"),
    ({"xla": False}, {"strategy": "mirrored"}, None),  # plain TensorFlow both
    ({"strategy": "mirrored"}, {"xla": False}, None),  # (--xla is not used with mirrored)
    ({}, {"steps_per_call": 7, "epochs": 5, "image_dir": "x", "save_every": 3}, None),
])
def test_xla_strategy_and_speed_settings_are_accepted(old, new, note):
    problems, notes = check(old, new)
    assert problems == []
    if note is None:
        assert notes == []
    else:
        assert len(notes) == 1 and note in notes[0]


def test_a_record_without_run_settings_accepts_any():
    """Checkpoints made before the run settings were recorded: unknown, accepted."""
    old = TrainConfig(seed=7).architecture()
    assert resume.check(old, resume.record(TrainConfig(seed=8, batch_size=64))) == ([], [])
    assert resume.check(old, TrainConfig(seed=7).architecture()) == ([], [])


# --- in training --------------------------------------------------------------------------


tiny_config = conftest.tiny_configs(epochs=40, checkpoint_every=20, save_every=20, seed=7)


def quiet(_):
    pass


def assert_same_tensors(a, b):
    assert a.keys() == b.keys()
    for name in a:
        if name != "_CHECKPOINTABLE_OBJECT_GRAPH":  # names Keras numbers per process
            assert np.array_equal(a[name], b[name]), name


def final_tensors(config):
    return checkpoint_tensors(os.path.join(config.checkpoint_dir, f"ckpt-{config.epochs}"))


@pytest.fixture(scope="module")
def trained_40(tmp_path_factory, data_dir):
    folder = tmp_path_factory.mktemp("trained_40")
    train_lib.train(tiny_config(folder, data_dir), log=quiet)
    return folder


@pytest.mark.parametrize("change", [dict(seed=8), dict(batch_size=64), dict(d_steps=2),
                                    dict(num_images=16), dict(dataset="fashion_mnist")])
def test_a_refused_resume_names_the_flag_and_changes_nothing(trained_40, tmp_path, data_dir,
                                                             change):
    shutil.copytree(trained_40, tmp_path, dirs_exist_ok=True)
    before = file_snapshot(tmp_path)
    (flag, value), = change.items()
    # fashion_mnist is not prepared in data_dir: the refusal comes before loading data.
    with pytest.raises(checkpoints.CheckpointError, match=f"--{flag}={value} here, "):
        train_lib.train(tiny_config(tmp_path, data_dir, epochs=60, **change), log=quiet)
    assert file_snapshot(tmp_path) == before


@pytest.mark.parametrize("xla", [False, pytest.param(True, marks=pytest.mark.slow)],
                         ids=["noxla", "xla"])
def test_another_steps_per_call_resumes_to_the_same_numbers(tmp_path, data_dir, xla):
    straight = tiny_config(tmp_path / "straight", data_dir, epochs=60, xla=xla)
    train_lib.train(straight, log=quiet)
    train_lib.train(tiny_config(tmp_path / "resumed", data_dir, xla=xla), log=quiet)
    logs = []
    resumed = tiny_config(tmp_path / "resumed", data_dir, epochs=60, xla=xla, steps_per_call=7)
    train_lib.train(resumed, log=logs.append)
    assert "Resuming from step 40" in "\n".join(logs)
    assert_same_tensors(final_tensors(resumed), final_tensors(straight))


@pytest.mark.slow
def test_a_resume_that_switches_xla_on_trains_on_and_says_so(trained_40, tmp_path, data_dir):
    shutil.copytree(trained_40, tmp_path, dirs_exist_ok=True)
    logs = []
    train_lib.train(tiny_config(tmp_path, data_dir, epochs=60, xla=True), log=logs.append)
    assert "Resuming from step 40" in "\n".join(logs)
    assert any(line.startswith("Note: the checkpoint's run drew its noise with plain "
                               "TensorFlow, this one with XLA") for line in logs)
    assert os.path.exists(os.path.join(tmp_path, "ckpt", "ckpt-60.index"))


def rewrite_as_old_checkpoint(config, step):
    """Rewrites ckpt-<step> with the record today's code without gan.training.resume stores:
    the bare TrainConfig.architecture(), no run settings."""
    state = step_lib.create_state(config)
    manager = checkpoints.make_manager(state, config.checkpoint_dir, config.keep_checkpoints)
    assert checkpoints.restore_latest(state, manager, config.architecture()) == step
    checkpoints.save(manager, step)
    assert checkpoints.read_architecture(manager.latest_checkpoint) == config.architecture()


def test_an_old_checkpoint_without_run_settings_still_resumes(trained_40, tmp_path, data_dir):
    shutil.copytree(trained_40, tmp_path / "old", dirs_exist_ok=True)
    rewrite_as_old_checkpoint(tiny_config(tmp_path / "old", data_dir), 40)
    shutil.copytree(tmp_path / "old", tmp_path / "seed8")

    logs = []
    resumed = tiny_config(tmp_path / "old", data_dir, epochs=60)
    train_lib.train(resumed, log=logs.append)
    assert "Resuming from step 40" in "\n".join(logs)
    new_record = json.loads(checkpoints.read_architecture(
        os.path.join(resumed.checkpoint_dir, "ckpt-60")))
    assert new_record[resume.RUN_KEY]["seed"] == 7  # recorded from now on
    shutil.copytree(trained_40, tmp_path / "new", dirs_exist_ok=True)
    straight = tiny_config(tmp_path / "new", data_dir, epochs=60)
    train_lib.train(straight, log=quiet)
    # (the record, and the save counter: the rewrite was one more save)
    differ = ("architecture", "save_counter")
    assert_same_tensors(
        {k: v for k, v in final_tensors(resumed).items() if not k.startswith(differ)},
        {k: v for k, v in final_tensors(straight).items() if not k.startswith(differ)})

    # The seed such a checkpoint was made with is unknown: another one is accepted.
    train_lib.train(tiny_config(tmp_path / "seed8", data_dir, epochs=60, seed=8), log=quiet)


def test_a_changed_gp_weight_and_ema_decay_apply_from_the_resumed_step(tmp_path, data_dir):
    options = dict(loss="wgan-gp", ema=True)
    train_lib.train(tiny_config(tmp_path / "a", data_dir, **options), log=quiet)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    logs = []
    changed = tiny_config(tmp_path / "a", data_dir, epochs=60, gp_weight=5.0, ema_decay=0.99,
                          **options)
    state = train_lib.train(changed, log=logs.append)
    assert "--gp_weight=5 replaces the checkpoint's 10." in logs
    assert "--ema_decay=0.99 replaces the checkpoint's 0.999." in logs
    assert (state.config.gp_weight, state.config.ema_decay) == (5.0, 0.99)
    record = json.loads(checkpoints.read_architecture(
        os.path.join(changed.checkpoint_dir, "ckpt-60")))[resume.RUN_KEY]
    assert (record["gp_weight"], record["ema_decay"]) == (5.0, 0.99)
    # The same 20 steps with the old values end elsewhere: the new ones were used.
    same = tiny_config(tmp_path / "b", data_dir, epochs=60, **options)
    train_lib.train(same, log=quiet)
    final, other = final_tensors(changed), final_tensors(same)
    assert not all(np.array_equal(final[k], other[k]) for k in final if "ema_generator" in k)

    logs.clear()  # resuming again with the new values: nothing to report
    train_lib.train(dataclasses.replace(changed, epochs=80), log=logs.append)
    assert not any("replaces" in line for line in logs)


# --- default <-> mirrored ------------------------------------------------------------------

# One process with 2 logical CPUs: default (plain TensorFlow) to 20, mirrored to 30; mirrored
# to 20, default to 30; and default straight to 30. Writes each run's final tensors.
STRATEGY_SCRIPT = """
import json, sys
import numpy as np
from gan.training import distribute
distribute.configure_cpu_devices(2)
from gan import config as config_lib
from gan.training import run as train_lib
from conftest import checkpoint_tensors
data_dir, folder = sys.argv[1], sys.argv[2]
def run(name, strategies):
    logs = []
    for epochs, strategy in zip((20, 30), strategies):
        config = config_lib.TrainConfig(
            epochs=epochs, strategy=strategy, cpu_devices=2, batch_size=8, xla=False,
            checkpoint_every=10, save_every=10, steps_per_call=10, seed=5, data_dir=data_dir,
            image_dir=f"{folder}/{name}/img", checkpoint_dir=f"{folder}/{name}/ckpt",
            log_every_secs=1e9)
        train_lib.train(config, log=logs.append)
    tensors = checkpoint_tensors(f"{folder}/{name}/ckpt/ckpt-30")
    tensors.pop("_CHECKPOINTABLE_OBJECT_GRAPH")
    np.savez(f"{folder}/{name}.npz", **{k.replace("/", "|"): v for k, v in tensors.items()})
    with open(f"{folder}/{name}.log", "w") as f:
        f.write("\\n".join(logs))
run("straight", ("default", "default"))
run("to_mirrored", ("default", "mirrored"))
run("from_mirrored", ("mirrored", "default"))
"""


@pytest.mark.slow
def test_default_and_mirrored_resume_each_other(tmp_path, data_dir):
    """README: checkpoints do not depend on the strategy. Resumed across default and
    mirrored (2 logical CPUs), a run ends where the one-device run does, up to the order of
    float sums (atol 1e-5)."""
    subprocess.run([sys.executable, "-c", STRATEGY_SCRIPT, data_dir, str(tmp_path)],
                   cwd=REPO, check=True, timeout=600,
                   env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
                            PYTHONPATH=os.path.join(REPO, "tests")))
    straight = np.load(tmp_path / "straight.npz")
    for name in ("to_mirrored", "from_mirrored"):
        log = (tmp_path / f"{name}.log").read_text()
        assert "Resuming from step 20" in log and "Note: the checkpoint's run drew" not in log
        resumed = np.load(tmp_path / f"{name}.npz")
        assert sorted(resumed.files) == sorted(straight.files)
        for key in straight.files:
            if straight[key].dtype.kind == "f":
                np.testing.assert_allclose(resumed[key], straight[key], rtol=0, atol=1e-5,
                                           err_msg=f"{name}: {key}")
            elif "architecture" not in key:  # step, RNG state, counters
                np.testing.assert_array_equal(resumed[key], straight[key], err_msg=key)
