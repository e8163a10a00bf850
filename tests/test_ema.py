"""The EMA generator (--ema): batch-norm statistics and training under --strategy=mirrored.

With batch-norm generators (mlp_large, dcgan) the EMA copy samples in inference mode with
its own moving mean and variance, so those must follow the live generator's (they are
statistics of the live network's activations, not weights to average). Under
MirroredStrategy over 2 logical CPU devices the EMA weights must be those of a one-device
run on the same global batches.

Shapes: B = 8 images [B, 28, 28] in [0, 1].
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO
from gan import config as config_lib
from gan.training import step as step_lib

B = 8
DECAY = 0.9


def real_batch(seed):
    return tf.constant(np.random.default_rng(seed).uniform(0, 1, (B, 28, 28)), tf.float32)


def by_position(variables):
    """{"position-name": value}: the EMA copy's layers are named apart from the live ones'."""
    return {f"{i}-{v.name}": v.numpy().copy() for i, v in enumerate(variables)}


@pytest.mark.parametrize("model", ["mlp_large", "dcgan"])
def test_the_ema_generator_keeps_the_live_batch_norm_statistics(model):
    state = step_lib.create_state(config_lib.TrainConfig(seed=0, model=model, ema=True,
                                                         ema_decay=DECAY, batch_size=B))
    initial = by_position(state.generator.non_trainable_variables)
    assert initial and all("moving_" in key for key in initial)
    step = step_lib.train_step  # eagerly: three steps cost less than tracing one
    for i in range(3):
        ema_before = by_position(state.ema_generator.trainable_variables)
        step(state, real_batch(i))
        live_stats = by_position(state.generator.non_trainable_variables)
        ema_stats = by_position(state.ema_generator.non_trainable_variables)
        assert live_stats.keys() == ema_stats.keys()
        for key, value in live_stats.items():
            assert np.abs(value - initial[key]).max() > 1e-3, f"{key} did not move"
            np.testing.assert_array_equal(ema_stats[key], value, err_msg=key)
        # The weights (batch norm's gamma and beta included) are averaged, not copied.
        live = by_position(state.generator.trainable_variables)
        ema = by_position(state.ema_generator.trainable_variables)
        assert any("gamma" in key for key in ema)
        for key, value in ema.items():
            np.testing.assert_allclose(value, DECAY * ema_before[key] + (1 - DECAY) * live[key],
                                       rtol=1e-5, atol=1e-7, err_msg=key)
    # Sampling (inference mode) normalises with those statistics: zeroing them changes images.
    z = tf.random.stateless_normal([4, 100], seed=[1, 2])
    images = step_lib.sampling_generator(state)(z, training=False).numpy()
    for variable in state.ema_generator.non_trainable_variables:
        variable.assign(tf.zeros_like(variable) if "mean" in variable.name
                        else tf.ones_like(variable))
    assert not np.allclose(state.ema_generator(z, training=False).numpy(), images, atol=1e-4)


# For each run {"options": TrainConfig fields, "strategies": names} of argv[1]: 4
# iterations with each strategy ("mirrored": MirroredStrategy over 2 logical CPU devices)
# on the same global batches and seed; writes the live and EMA generators' variables
# ({run}/{strategy}/{live|ema}/{position}-{name}) to argv[2].
MIRRORED_SCRIPT = """
import json, sys
import numpy as np
from gan.training import distribute
distribute.configure_cpu_devices(2)
import tensorflow as tf
from gan import config as config_lib
from gan.training import loop as loop_lib, step as step_lib
runs, out, steps = json.loads(sys.argv[1]), sys.argv[2], 4
result = {}
# One strategy object each: a second MirroredStrategy in a process reuses the first one's
# collective instance keys and its all-reduces fail on the other model's shapes.
strategies = {name: distribute.make_strategy(name) for name in ("default", "mirrored")}
for index, run in enumerate(runs):
    for name in run["strategies"]:
        strategy = strategies[name]
        config = config_lib.TrainConfig(seed=1, batch_size=8, ema=True, ema_decay=0.5,
                                        **run["options"])
        state = step_lib.create_state(config, strategy)
        assert distribute.num_replicas(strategy) == (2 if name == "mirrored" else 1)
        multi = loop_lib.make_multi_step(state, False, strategy)
        real = tf.constant(np.random.default_rng(0).uniform(0, 1, (steps, 8, 28, 28)),
                           tf.float32)
        for i in range(steps):
            multi(real, tf.constant(i), tf.constant(1))
        # Variables by position and short name: each model's layer names differ.
        for kind, model in (("live", state.generator), ("ema", state.ema_generator)):
            for i, variable in enumerate(model.variables):
                result[f"{index}/{name}/{kind}/{i}-{variable.name}"] = variable.numpy()
np.savez(out, **result)
"""


def train_under_strategies(runs, folder):
    """MIRRORED_SCRIPT's runs in a fresh process (logical CPU devices must be configured
    before TensorFlow starts): [{(strategy, live|ema, "position-name"): value}] per run."""
    out = folder / "result.npz"
    subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT, json.dumps(runs), str(out)],
                   cwd=REPO, check=True, timeout=300,
                   env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    results = [{} for _ in runs]
    with np.load(out) as saved:
        for key in saved.files:
            index, name, kind, variable = key.split("/")
            results[int(index)][(name, kind, variable)] = saved[key]
    return results


def assert_same_ema(result):
    """The mirrored run's EMA variables equal the one-device run's (atol 1e-5: only the
    order of float additions differs)."""
    ema = {variable: value for (name, kind, variable), value in result.items()
           if name == "default" and kind == "ema"}
    assert ema
    for variable, value in ema.items():
        np.testing.assert_allclose(result[("mirrored", "ema", variable)], value, rtol=0,
                                   atol=1e-5, err_msg=variable)


@pytest.mark.slow
def test_mirrored_ema_equals_one_devices_and_keeps_the_batch_norm_statistics(tmp_path):
    """Under --strategy=mirrored (2 logical CPUs) the EMA weights are one device's, for the
    mlp and for mlp_large, whose synchronized batch norm sees the global batch; the EMA copy's
    batch-norm statistics are the live ones."""
    mlp, large = train_under_strategies(
        [{"options": {"model": "mlp"}, "strategies": ["default", "mirrored"]},
         {"options": {"model": "mlp_large"}, "strategies": ["default", "mirrored"]}], tmp_path)
    assert_same_ema(mlp)
    assert_same_ema(large)
    moved = [np.abs(value - mlp[("default", "live", variable)]).max()
             for (name, kind, variable), value in mlp.items()
             if name == "default" and kind == "ema"]
    assert min(moved) > 1e-4  # an average, not a copy of the live weights
    stats = [variable for (_, kind, variable) in large if kind == "live" and "moving_" in variable]
    assert stats
    for variable in stats:
        np.testing.assert_array_equal(large[("mirrored", "ema", variable)],
                                      large[("mirrored", "live", variable)], err_msg=variable)
