"""What a resumed run must agree with, and what it may change.

A checkpoint stores one JSON record (TrainState.architecture): the architecture fields of
TrainConfig.architecture(), which must match exactly (other variables otherwise), and under
"run" the settings below, recorded since this module exists. A setting a checkpoint does
not record (one made before) is unknown and accepted, so older checkpoints resume as before.

Per flag, resuming with another value:
  --seed, --batch_size, --d_steps  refused: the data stream's position after step s is a
        function of (seed, s x batch_size x d_steps) and --clusters' k-means is seeded by
        --seed, so the resumed run would not continue the run it resumes (other batches,
        or other clusters), and no README promise could say what it trains on.
  --num_images  refused: the strips' fixed noise in the checkpoint has one row per image.
  --gp_weight (with --loss=wgan-gp), --ema_decay (with --ema), --diversity, --beta_1,
        --beta_2  taken from the resumed step on, and logged, as --g_learning_rate and
        --d_learning_rate are: the same weights and data, another hyperparameter from here on.
  --xla / --noxla (and --strategy, which leaves XLA out of the loop unless "default")
        accepted, with a note when the noise generator changes hands: XLA and plain
        TensorFlow turn the same generator state into other numbers, so the run differs
        from an uninterrupted one from that step on (same distributions).
  --steps_per_call, --strategy (otherwise), --epochs, the folders and cadences: free; they
        do not change what is computed (--strategy: up to the order of float sums).
"""

import json

from gan.config import TrainConfig

RUN_KEY = "run"

REFUSED = {
    "seed": "it fixes the order of the training data (and --clusters' k-means clusters), "
            "so the resumed run would train on other batches than the run it continues",
    "batch_size": "the training data's position after each step is steps x --batch_size "
                  "x --d_steps, so the resumed run would skip or repeat training data",
    "d_steps": "the training data's position after each step is steps x --batch_size "
               "x --d_steps, so the resumed run would skip or repeat training data",
    "num_images": "the checkpoint's fixed noise of the image strips has one row per image",
}
# Hyperparameters a resumed run may change (the new value applies from the resumed step);
# each is recorded only where it has an effect.
APPLIED = ("gp_weight", "ema_decay", "diversity", "beta_1", "beta_2")


def run_settings(config):
    """The "run" part of the record of a run with TrainConfig `config`."""
    settings = {name: getattr(config, name) for name in REFUSED}
    settings.update(beta_1=config.beta_1, beta_2=config.beta_2, diversity=config.diversity,
                    xla=bool(config.xla and config.strategy == "default"))
    if config.loss == "wgan-gp":
        settings["gp_weight"] = config.gp_weight
    if config.ema:
        settings["ema_decay"] = config.ema_decay
    return settings


def record(config):
    """The JSON a checkpoint of a run with `config` stores: the architecture fields and the
    run settings."""
    fields = json.loads(config.architecture())
    fields[RUN_KEY] = run_settings(config)
    return json.dumps(fields, sort_keys=True)


def architecture_of(record_json):
    """The architecture fields of a stored record (a dict, without the run settings)."""
    fields = json.loads(record_json)
    fields.pop(RUN_KEY, None)
    return fields


def _flag(name, value):
    if isinstance(value, bool):
        return f"--{name}" if value else f"--no{name}"
    if value is None:
        return f"--{name} unset"
    return f"--{name}={value}"


def check(saved_json, wanted_json):
    """Compares a checkpoint's record with this run's. Returns (problems, notes): lines
    naming each flag that makes the checkpoint unusable for this run (empty: it may be
    resumed), and lines saying which settings this run changes."""
    saved, wanted = json.loads(saved_json), json.loads(wanted_json)
    saved_run, wanted_run = saved.pop(RUN_KEY, {}), wanted.pop(RUN_KEY, {})
    problems = []
    for name in sorted(saved.keys() | wanted.keys()):
        # An optional architecture field is recorded only when set: absent is its default.
        default = getattr(TrainConfig, name, None)
        old, new = saved.get(name, default), wanted.get(name, default)
        if old != new:
            problems.append(f"{_flag(name, new)} here, {_flag(name, old)} in the checkpoint "
                            "(another architecture)")
    for name, why in REFUSED.items():
        if name in saved_run and name in wanted_run and saved_run[name] != wanted_run[name]:
            problems.append(f"{_flag(name, wanted_run[name])} here, {_flag(name, saved_run[name])} "
                            f"in the checkpoint: {why}")
    notes = [f"--{name}={wanted_run[name]:g} replaces the checkpoint's {saved_run[name]:g}."
             for name in APPLIED
             if name in saved_run and name in wanted_run and saved_run[name] != wanted_run[name]]
    if "xla" in saved_run and saved_run["xla"] != wanted_run.get("xla"):
        made, now = (("XLA", "plain TensorFlow") if saved_run["xla"]
                     else ("plain TensorFlow", "XLA"))
        notes.append(f"Note: the checkpoint's run drew its noise with {made}, this one with "
                     f"{now} (--xla only applies with --strategy=default): the same generator "
                     "state gives other numbers there, so from here on this run differs from "
                     "an uninterrupted one (same distributions; each is deterministic).")
    return problems, notes
