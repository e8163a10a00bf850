"""--loss=rpgan in whole runs: a short training with R1 and R2, packed and conditioned on
clusters, with EMA, is finite and resumes to what an uninterrupted run computes."""

import json
import os

import numpy as np

import conftest
from conftest import checkpoint_tensors
from gan.training import checkpoints, resume, run as train_lib

tiny_config = conftest.tiny_configs(loss="rpgan", r1=1.0, r2=1.0, batch_size=8, pack=2,
                                    conditional=True, clusters=4, ema=True,
                                    checkpoint_every=10, save_every=10, seed=3)


def final_tensors(cfg):
    return checkpoint_tensors(os.path.join(cfg.checkpoint_dir, f"ckpt-{cfg.epochs}"))


def metrics_lines(cfg):
    with open(os.path.join(cfg.resolved_logs_dir(), "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def test_a_short_rpgan_run_is_finite_and_resumes_like_an_uninterrupted_one(tmp_path, data_dir):
    first = tiny_config(tmp_path / "a", data_dir, epochs=20)
    first.validate()
    train_lib.train(first, log=lambda _: None)
    logs = []
    resumed = tiny_config(tmp_path / "a", data_dir, epochs=30)
    train_lib.train(resumed, log=logs.append)
    assert "Resuming from step 20" in "\n".join(logs)
    straight = tiny_config(tmp_path / "b", data_dir, epochs=30)
    train_lib.train(straight, log=lambda _: None)

    lines = metrics_lines(straight)
    assert lines and all(np.isfinite(line[name]) for line in lines
                         for name in ("d_loss", "g_loss", "d_real", "d_fake"))
    # D outputs unbounded scores, and D's loss holds the penalties: above softplus's floor 0
    assert all(line["d_loss"] > 0 for line in lines)
    a, b = final_tensors(resumed), final_tensors(straight)
    assert a.keys() == b.keys()
    for name in a:
        if name != "_CHECKPOINTABLE_OBJECT_GRAPH":  # names Keras numbers per process
            assert np.array_equal(a[name], b[name]), name
    record = json.loads(checkpoints.read_architecture(
        os.path.join(straight.checkpoint_dir, "ckpt-30")))
    assert record["loss"] == "rpgan" and record["pack"] == 2
    assert (record[resume.RUN_KEY]["r1"], record[resume.RUN_KEY]["r2"]) == (1.0, 1.0)


def test_a_changed_r1_applies_from_the_resumed_step(tmp_path, data_dir):
    train_lib.train(tiny_config(tmp_path, data_dir, epochs=10), log=lambda _: None)
    logs = []
    state = train_lib.train(tiny_config(tmp_path, data_dir, epochs=20, r1=0.5), log=logs.append)
    assert "--r1=0.5 replaces the checkpoint's 1." in logs
    assert state.config.r1 == 0.5


def test_a_lazy_penalty_run_resumes_like_an_uninterrupted_one(tmp_path, data_dir):
    # --penalty_every=3 keys on the global step, so a run stopped at step 10 (not a
    # multiple of 3) goes on with the same iterations penalised as one never stopped.
    lazy = lambda folder, epochs: tiny_config(folder, data_dir, epochs=epochs,  # noqa: E731
                                              penalty_every=3)
    train_lib.train(lazy(tmp_path / "a", 10), log=lambda _: None)
    resumed = lazy(tmp_path / "a", 20)
    train_lib.train(resumed, log=lambda _: None)
    straight = lazy(tmp_path / "b", 20)
    train_lib.train(straight, log=lambda _: None)
    every_step = tiny_config(tmp_path / "c", data_dir, epochs=20)
    train_lib.train(every_step, log=lambda _: None)
    a, b, c = final_tensors(resumed), final_tensors(straight), final_tensors(every_step)
    for name in a:
        if name != "_CHECKPOINTABLE_OBJECT_GRAPH":
            assert np.array_equal(a[name], b[name]), name
    # and the spacing is in effect: the weights are not those of the penalty every step
    # (float tensors only: the record, a string, names the setting anyway)
    weights = [name for name in b if getattr(b[name], "dtype", None) == np.float32]
    assert weights and any(not np.array_equal(b[name], c[name]) for name in weights)
    assert all(np.isfinite(line["d_loss"]) for line in metrics_lines(straight))
    record = json.loads(checkpoints.read_architecture(
        os.path.join(straight.checkpoint_dir, "ckpt-20")))
    assert record[resume.RUN_KEY]["penalty_every"] == 3
