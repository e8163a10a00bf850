"""gan.training.distribute and training under tf.distribute: strategies, the chief, mixed precision.

The mirrored and multi-worker runs start their own Python processes: logical CPU devices
must be configured before TensorFlow initialises its devices, which this pytest process has
already done.
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO, run_cli_cases, tiny_config
from gan.training import checkpoints, distribute, loop
from gan.training import step as step_lib
from gan.config import TrainConfig

# --- choosing a strategy, bad input ------------------------------------------------------------


def test_default_strategy_is_no_strategy_and_the_chief():
    strategy = distribute.make_strategy("default")
    assert strategy is None
    assert distribute.num_replicas(strategy) == 1
    assert distribute.is_chief(strategy)


def test_unknown_strategy_names_the_flag(tmp_path):
    with pytest.raises(ValueError, match="--strategy must be one of default, mirrored"):
        distribute.make_strategy("parameter_server")
    with pytest.raises(ValueError, match="--strategy must be one of"):
        TrainConfig(strategy="tpu", image_dir=str(tmp_path),
                    checkpoint_dir=str(tmp_path)).validate()


def test_cpu_devices_after_tensorflow_started_names_the_flag(tmp_path):
    tf.constant(0)  # devices are initialised in this process by now
    with pytest.raises(ValueError, match="--cpu_devices=3 must be set before TensorFlow"):
        distribute.configure_cpu_devices(3)
    with pytest.raises(ValueError, match="--cpu_devices must be 0"):
        TrainConfig(cpu_devices=-1, image_dir=str(tmp_path),
                    checkpoint_dir=str(tmp_path)).validate()


def test_multi_worker_needs_a_usable_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="--strategy=multi_worker needs the TF_CONFIG"):
        distribute.make_strategy("multi_worker")
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["127.0.0.1:1"]}}')  # no task
    with pytest.raises(ValueError, match="TF_CONFIG must be JSON with 'cluster' and 'task'"):
        distribute.make_strategy("multi_worker")


@pytest.mark.parametrize("batch,replicas,minibatch_std,diversity,ok", [
    (32, 2, False, 0, True), (33, 2, False, 0, False), (8, 3, False, 0, False),
    (16, 2, True, 0, True), (12, 2, True, 0, False), (4, 1, True, 0, True),
    (6, 2, False, 0, True), (6, 2, False, 1, False), (8, 2, False, 1, True)])
def test_global_batch_must_split_evenly_over_replicas(batch, replicas, minibatch_std,
                                                      diversity, ok):
    # --diversity's pairs (2i, 2i+1) must not span two replicas: an even batch per replica.
    config = TrainConfig(batch_size=batch, minibatch_std=minibatch_std, diversity=diversity)
    if ok:
        distribute.check_global_batch(config, replicas)
    else:
        with pytest.raises(ValueError, match=f"--batch_size={batch} is the global batch"):
            distribute.check_global_batch(config, replicas)


@pytest.mark.parametrize("task_type,task_id,cluster,chief", [
    (None, None, {}, True),
    ("chief", 0, {"chief": ["a"], "worker": ["b"]}, True),
    ("worker", 0, {"chief": ["a"], "worker": ["b"]}, False),
    ("worker", 0, {"worker": ["a", "b"]}, True),
    ("worker", 1, {"worker": ["a", "b"]}, False)])
def test_the_chief_is_the_chief_task_else_worker_0(task_type, task_id, cluster, chief):
    assert distribute.is_chief_task(task_type, task_id, cluster) is chief


def test_a_worker_writes_into_a_temporary_folder_that_is_deleted(tmp_path):
    config = tiny_config(tmp_path)
    with distribute.writing_folders(config, chief=True) as (own, save_to):
        assert own is config and save_to == config.checkpoint_dir
    with pytest.raises(RuntimeError):
        with distribute.writing_folders(config, chief=False) as (worker, save_to):
            for folder in (worker.image_dir, worker.resolved_logs_dir(), save_to):
                assert not folder.startswith(str(tmp_path))
                os.makedirs(folder)
            assert worker.checkpoint_dir == config.checkpoint_dir  # restores from the chief's
            raise RuntimeError("a failed run")
    assert not os.path.exists(os.path.dirname(save_to))  # deleted, also after the error


@pytest.mark.slow
def test_bad_scaling_flags_exit_2_naming_the_flag(tmp_path, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)  # run_cli passes os.environ on
    common = [f"--checkpoint_dir={tmp_path}/c", f"--image_dir={tmp_path}/i"]
    # In one process (run_cli_cases), the case that splits the CPU first: TensorFlow sets up
    # its devices once.
    cases = ((["--strategy=mirrored", "--cpu_devices=2", "--batch_size=7"], "--batch_size=7"),
             (["--strategy=multi_worker"], "--strategy=multi_worker"),
             (["--strategy=ring"], "--strategy"))
    results = run_cli_cases("gan.train", [[*common, *flags] for flags, _ in cases])
    for (flags, named), result in zip(cases, results):
        assert result.returncode == 2, (flags, result.stderr[-2000:])
        assert f"error: {named}" in result.stderr, flags
    assert not os.path.exists(tmp_path / "c" / "checkpoint")


# --- mixed precision ---------------------------------------------------------------------------


def test_mixed_precision_steps_are_finite_in_float16_with_float32_weights():
    import keras

    state = step_lib.create_state(TrainConfig(seed=0, batch_size=8, mixed_precision=True))
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
    assert state.generator.layers[0].compute_dtype == "float16"
    assert isinstance(state.g_optimizer, keras.optimizers.LossScaleOptimizer)
    assert all(v.dtype == "float32" for v in state.generator.trainable_variables)
    before = [v.numpy().copy() for v in state.discriminator.trainable_variables]
    multi = loop.make_multi_step(state, jit_compile=False)
    real = tf.constant(np.random.default_rng(0).uniform(0, 1, (3, 8, 28, 28)), tf.float32)
    out = multi(real, tf.constant(0), tf.constant(3))
    assert bool(out["finite"]) and int(out["steps"]) == 3
    for name in loop.METRICS:
        assert out[name].dtype == tf.float32 and np.isfinite(out[name].numpy()), name
    after = [v.numpy() for v in state.discriminator.trainable_variables]
    assert not all(np.array_equal(a, b) for a, b in zip(before, after))


def test_mixed_precision_is_part_of_the_architecture_only_when_on(tmp_path):
    assert "mixed_precision" not in json.loads(TrainConfig().architecture())  # old checkpoints
    assert json.loads(TrainConfig(mixed_precision=True).architecture())["mixed_precision"]
    mixed = step_lib.create_state(TrainConfig(mixed_precision=True))
    checkpoints.make_manager(mixed, str(tmp_path), 1).save(checkpoint_number=1)
    plain_config = TrainConfig()
    plain = step_lib.create_state(plain_config)
    manager = checkpoints.make_manager(plain, str(tmp_path), 1)
    with pytest.raises(checkpoints.CheckpointError, match="different configuration"):
        checkpoints.restore_latest(plain, manager, plain_config.architecture())


# --- mirrored over 2 logical CPUs equals one device --------------------------------------------

# Runs STEPS iterations on the same global batches with the default strategy and with
# MirroredStrategy over 2 logical CPU devices; writes their metrics and weights to argv[2].
COMPARE_SCRIPT = """
import json, sys
import numpy as np
from gan.training import distribute
distribute.configure_cpu_devices(2)
import tensorflow as tf
from gan import config as config_lib
from gan.training import loop
from gan.training import step as step_lib
options, out = json.loads(sys.argv[1]), sys.argv[2]
result = {}
for name in ("default", "mirrored"):
    config = config_lib.TrainConfig(seed=1, batch_size=8, **options)
    strategy = distribute.make_strategy(name)
    state = step_lib.create_state(config, strategy)
    result[name + "_initial"] = np.concatenate(
        [v.numpy().ravel() for v in state.generator.trainable_variables])
    multi = loop.make_multi_step(state, False, strategy)
    rng = np.random.default_rng(0)
    rows = 8 * config.d_steps
    real = tf.constant(rng.uniform(0, 1, (5, rows, 28, 28)), tf.float32)
    labels = tf.constant(rng.integers(0, 10, (5, rows)), tf.int32)
    losses = [multi(real, tf.constant(i), tf.constant(1), labels) for i in range(5)]
    for metric in loop.METRICS:
        result[f"{name}_{metric}"] = np.array([float(m[metric]) for m in losses])
    result[name + "_weights"] = np.concatenate([v.numpy().ravel() for v in
        state.generator.trainable_variables + state.discriminator.trainable_variables])
    result[name + "_replicas"] = np.array(distribute.num_replicas(strategy))
    result[name + "_step"] = np.array(int(state.step.numpy()))
np.savez(out, **result)
"""


@pytest.mark.slow
@pytest.mark.parametrize("options", [
    {}, {"conditional": True, "d_steps": 2},
    # G's loss reads D on the replica's reals; R1 and R2 are per-pack means over replicas
    {"loss": "rpgan", "r1": 1.0, "r2": 1.0, "pack": 2, "conditional": True, "ema": True}],
    ids=["mlp", "conditional-d_steps2", "rpgan-pack2-conditional"])
def test_mirrored_on_2_cpus_trains_like_one_device(tmp_path, options):
    """Same global batch and seed: the same losses (rtol 1e-5) and weights (atol 1e-5, after
    5 steps) as one device; only the order of float additions differs."""
    out = tmp_path / "result.npz"
    subprocess.run([sys.executable, "-c", COMPARE_SCRIPT, json.dumps(options), str(out)],
                   cwd=REPO, check=True, timeout=300,
                   env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    r = np.load(out)
    assert int(r["default_replicas"]) == 1 and int(r["mirrored_replicas"]) == 2
    assert int(r["default_step"]) == int(r["mirrored_step"]) == 5
    np.testing.assert_array_equal(r["default_initial"], r["mirrored_initial"])
    weights = slice(None)
    if options.get("loss") == "rpgan":
        # RpGAN's losses read only score differences, so D's output bias (the last weight)
        # has a zero gradient up to rounding, which Adam's first steps (g / (|g| + eps))
        # blow up to ~1e-5: both runs' scores shift alike by that noise. Compared instead:
        # the differences d_real - d_fake, and the other weights.
        for name in ("default", "mirrored"):
            r = dict(r, **{f"{name}_d_real": r[f"{name}_d_real"] - r[f"{name}_d_fake"],
                           f"{name}_d_fake": np.zeros(5)})
        weights = slice(None, -1)
    # Adam's first steps move a weight by lr x g / (|g| + eps) whatever the size of g, so
    # weights whose gradients are nearly 0 (the rows of D's label embedding for labels seen
    # rarely; with RpGAN each a difference of a real pack's features and a fake pack's) move
    # by amounts that differ with the order of float additions: 1e-5 after 5 steps on some
    # CPUs (AMD EPYC, AVX2) for RpGAN. Any other difference between the strategies (a
    # replica's share of the batch or of the penalty) moves weights by ~lr = 1e-3 and more.
    atol = 3e-5 if options.get("loss") == "rpgan" else 1e-5
    for metric in loop.METRICS:
        np.testing.assert_allclose(r[f"mirrored_{metric}"], r[f"default_{metric}"], rtol=1e-5,
                                   atol=1e-6, err_msg=metric)
    np.testing.assert_allclose(r["mirrored_weights"][weights], r["default_weights"][weights],
                               rtol=0, atol=atol)
    assert np.abs(r["default_weights"][:r["default_initial"].size]
                  - r["default_initial"]).max() > 1e-3  # it did train


# --- multi-worker: 2 local processes -----------------------------------------------------------


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def run_two_workers(tmp_path, data_dir, epochs, checkpoint_dirs=("ckpt", "ckpt"),
                    timeout=240):
    """Runs `gan.train --strategy=multi_worker` as workers 0 (the chief) and 1 of a local
    cluster, with the --checkpoint_dir of each under tmp_path; returns [(returncode,
    output)] of each. A hung collective is killed by the timeout."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    processes = []
    for index in range(2):
        args = [sys.executable, "-m", "gan.train", "--strategy=multi_worker",
                f"--epochs={epochs}", "--batch_size=8", "--save_every=10",
                "--checkpoint_every=10", "--steps_per_call=10", f"--data_dir={data_dir}",
                f"--image_dir={tmp_path}/img",
                f"--checkpoint_dir={tmp_path}/{checkpoint_dirs[index]}"]
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        env = dict(os.environ, TF_CONFIG=tf_config, TF_CPP_MIN_LOG_LEVEL="2",
                   TMPDIR=str(tmp_path / "tmp"))  # where a worker's temporary folder goes
        processes.append(subprocess.Popen(args, cwd=REPO, env=env, text=True,
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    results = []
    try:
        for process in processes:
            output, _ = process.communicate(timeout=timeout)
            results.append((process.returncode, output))
    finally:
        for process in processes:
            process.kill()
    return results


@pytest.mark.slow
def test_two_local_workers_train_only_the_chief_writes_and_a_rerun_resumes(tmp_path, data_dir):
    (tmp_path / "tmp").mkdir()
    first = run_two_workers(tmp_path, data_dir, epochs=20)
    for code, output in first:
        assert code == 0, output[-3000:]
    assert sorted(os.listdir(tmp_path / "img")) == ["generated_0.png", "generated_10.png"]
    assert {"ckpt-10.index", "ckpt-20.index"} <= set(os.listdir(tmp_path / "ckpt"))
    assert os.listdir(tmp_path / "tmp") == []  # the worker's folder is gone
    assert sorted(os.listdir(tmp_path)) == ["ckpt", "img", "tmp"]

    second = run_two_workers(tmp_path, data_dir, epochs=30)
    for code, output in second:
        assert code == 0, output[-3000:]
        assert "Resuming from step 20" in output
    assert (tmp_path / "ckpt" / "ckpt-30.index").exists()
    assert "generated_20.png" in os.listdir(tmp_path / "img")
    assert os.listdir(tmp_path / "tmp") == []


@pytest.mark.slow
def test_workers_that_restore_different_steps_all_stop_with_a_message(tmp_path, data_dir):
    state = step_lib.create_state(TrainConfig(batch_size=8))
    state.step.assign(20)
    checkpoints.make_manager(state, str(tmp_path / "chief"), 1).save(checkpoint_number=20)
    results = run_two_workers(tmp_path, data_dir, epochs=30, checkpoint_dirs=("chief", "own"))
    for (code, output), step in zip(results, (20, 0)):
        assert code == 2, output[-3000:]
        assert f"error: the workers restored different steps (this one {step})" in output
    assert checkpoints.list_checkpoints(str(tmp_path / "chief")) == [
        str(tmp_path / "chief" / "ckpt-20")]  # nothing trained, nothing saved
    assert not (tmp_path / "img").exists() or os.listdir(tmp_path / "img") == []
