"""gan.training.loop: the compiled K-step loop around the step."""

import os

import numpy as np
import pytest
import tensorflow as tf

from gan import config as config_lib
from gan.training import loop
from gan.training import step as step_lib
from conftest import real_batch, same, weights


@pytest.mark.parametrize("xla", [False, True])
def test_multi_step_computes_the_same_as_single_steps(xla):
    """The fast path (K steps per compiled call) equals K one-step calls."""
    batches = tf.stack([real_batch(seed=i) for i in range(6)])
    plain = step_lib.create_state(config_lib.TrainConfig(seed=1))
    step = tf.function(step_lib.train_step, jit_compile=xla)
    plain_metrics = [step(plain, batches[i]) for i in range(6)]

    fast = step_lib.create_state(config_lib.TrainConfig(seed=1))
    multi = loop.make_multi_step(fast, jit_compile=xla)
    first = multi(batches, tf.constant(0), tf.constant(2))   # split like the training loop
    second = multi(batches, tf.constant(2), tf.constant(4))
    assert int(first["steps"]) == 2 and int(second["steps"]) == 4
    assert int(fast.step.numpy()) == 6
    expected_d = np.mean([m["d_loss"].numpy() for m in plain_metrics[2:]])
    assert np.isclose(second["d_loss"].numpy(), expected_d, rtol=1e-4)
    for a, b in zip(weights(plain.generator) + weights(plain.discriminator),
                    weights(fast.generator) + weights(fast.discriminator)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_multi_step_stops_at_the_first_non_finite_loss(state):
    batches = tf.stack([real_batch(seed=i) for i in range(5)])
    multi = loop.make_multi_step(state, jit_compile=True)
    multi(batches, tf.constant(0), tf.constant(2))
    kernel = state.discriminator.trainable_variables[0]
    kernel.assign(tf.fill(kernel.shape, np.nan))
    out = multi(batches, tf.constant(0), tf.constant(5))
    assert not bool(out["finite"])
    assert int(out["steps"]) == 1
    assert int(state.step.numpy()) == 3


@pytest.mark.parametrize("conditional", [False, True])
def test_multi_step_compiles_one_program_for_every_chunk_start_and_length(conditional):
    # A training run calls the loop at chunk offsets 0 and 1 (images are due after iteration
    # e) and other ones after a resume; XLA once treated `start` as a compile-time constant
    # and recompiled (~2.5 s) for each new offset. The compiled program must not depend on
    # the values of start and count.
    state = step_lib.create_state(config_lib.TrainConfig(conditional=conditional))
    multi = loop.make_multi_step(state, jit_compile=True)
    batches = tf.zeros([4, 32, 28, 28])
    labels = tf.zeros([4, 32], tf.int32) if conditional else None
    hlo = [multi.experimental_get_compiler_ir(batches, tf.constant(start), tf.constant(count),
                                              labels)(stage="hlo")
           for start, count in [(0, 4), (1, 2), (3, 1)]]
    assert hlo[0] == hlo[1] == hlo[2]


def test_warm_up_compiles_without_changing_the_state_or_retracing_later():
    config = config_lib.TrainConfig(seed=3, steps_per_call=4, batch_size=8, num_images=3)
    state = step_lib.create_state(config)
    def snapshot():
        models_and_optimizers = (state.generator, state.discriminator, state.g_optimizer,
                                 state.d_optimizer)
        return ([v.numpy().copy() for m in models_and_optimizers for v in m.variables]
                + [state.rng.state.numpy().copy(), state.step.numpy()])

    before = snapshot()
    multi_step = loop.make_multi_step(state, jit_compile=True)
    loop.warm_up(multi_step, config)
    assert same(before, snapshot())
    traces = multi_step.experimental_get_tracing_count()
    batches = tf.random.uniform([4, 8, 28, 28])
    out = multi_step(batches, tf.constant(0), tf.constant(4), tf.zeros([4, 8], tf.int32))
    assert int(out["steps"]) == 4 and int(state.step.numpy()) == 4
    assert multi_step.experimental_get_tracing_count() == traces == 1


def _failing_warm_up(failures, calls):
    """A warm_up stand-in that records its loop functions and fails `failures` times."""
    def fake(multi_step, config):
        calls.append(multi_step)
        if len(calls) <= failures:
            raise tf.errors.OutOfRangeError(None, None, "Read less bytes than requested")
    return fake


@pytest.mark.parametrize("failures", [1, 2])
def test_compile_loop_clears_the_cache_and_compiles_a_new_function_once(
        state, tmp_path, monkeypatch, failures):
    from gan.training import compilation

    monkeypatch.setattr(compilation, "_active_cache", (str(tmp_path), "gan-test"))
    (tmp_path / "gan-test__1__2__XLA_CPU_JIT.pb").write_bytes(b"cut short")
    (tmp_path / "other.pb").write_bytes(b"kept")
    calls, lines = [], []
    monkeypatch.setattr(loop, "warm_up", _failing_warm_up(failures, calls))
    config = config_lib.TrainConfig(steps_per_call=2, batch_size=4)
    if failures == 1:
        multi_step = loop.compile_loop(state, config, log=lines.append)
        assert multi_step is calls[1] and calls[0] is not calls[1]  # a new function, new key
    else:
        with pytest.raises(compilation.CacheError, match="also after clearing it: Read less"):
            loop.compile_loop(state, config, log=lines.append)
        assert len(calls) == 2  # one retry only
    assert os.listdir(tmp_path) == ["other.pb"]
    assert len(lines) == 1 and "removed 1 cached program(s) from" in lines[0]


def test_compile_loop_without_a_cache_raises_the_compilation_error(state, monkeypatch):
    from gan.training import compilation

    monkeypatch.setattr(compilation, "_active_cache", None)
    calls = []
    monkeypatch.setattr(loop, "warm_up", _failing_warm_up(1, calls))
    with pytest.raises(tf.errors.OutOfRangeError):
        loop.compile_loop(state, config_lib.TrainConfig(), log=pytest.fail)
    assert len(calls) == 1

