"""What a resumed run must agree with, and what it may change.

A checkpoint stores one JSON record (TrainState.architecture): the architecture fields of
TrainConfig.architecture(), which must match exactly (other variables otherwise), and under
"run" the run settings. Each TrainConfig field says which it is (its `resume`, gan.config):
  ARCHITECTURE (ARCHITECTURE_IF_SET: recorded only when not the default)  must match.
  REFUSED (--seed, --batch_size, --d_steps, --num_images)  recorded under "run"; a change
        is refused with the field's `why`: the resumed run would not continue the run it
        resumes (other batches, other clusters, other strip noise).
  APPLIED (--beta_1, --beta_2, --diversity; --gp_weight with --loss=wgan-gp, --r1 and --r2
        with --loss=rpgan, --penalty_every with either, --ema_decay with --ema)  recorded
        where they have an effect; a new value is taken from the resumed step on, and
        logged, as --g_learning_rate and --d_learning_rate are.
  FREE (--epochs, --steps_per_call, the folders and cadences, ...)  not recorded: they do
        not change what is computed (--strategy: up to the order of float sums).
Also under "run": whether XLA draws the noise (--xla with --strategy=default). A change is
accepted with a note: XLA and plain TensorFlow turn the same generator state into other
numbers, so the run differs from an uninterrupted one from that step on (same
distributions).
A setting a checkpoint does not record (one made before it existed) is unknown and accepted,
so older checkpoints resume as before.
"""

import json

from gan import config as config_lib

RUN_KEY = "run"


def run_settings(config):
    """The "run" part of the record of a run with TrainConfig `config`: its REFUSED fields,
    its APPLIED ones where they have an effect, and whether XLA draws its noise."""
    settings = {f.name: getattr(config, f.name) for f in config.fields(config_lib.REFUSED)}
    settings.update({f.name: getattr(config, f.name) for f in config.fields(config_lib.APPLIED)
                     if f.metadata["recorded"] is None or f.metadata["recorded"](config)})
    settings["xla"] = bool(config.xla and config.strategy == "default")
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


def check(saved_json, wanted_json, config_class=config_lib.TrainConfig):
    """Compares a checkpoint's record with this run's, by the `resume` kinds of the fields
    of `config_class`. Returns (problems, notes): lines naming each flag that makes the
    checkpoint unusable for this run (empty: it may be resumed), and lines saying which
    settings this run changes."""
    saved, wanted = json.loads(saved_json), json.loads(wanted_json)
    saved_run, wanted_run = saved.pop(RUN_KEY, {}), wanted.pop(RUN_KEY, {})
    problems = []
    for name in sorted(saved.keys() | wanted.keys()):
        # An optional architecture field is recorded only when set: absent is its default.
        default = getattr(config_class, name, None)
        old, new = saved.get(name, default), wanted.get(name, default)
        if old != new:
            problems.append(f"{_flag(name, new)} here, {_flag(name, old)} in the checkpoint "
                            "(another architecture)")
    def changed(field):
        name = field.name
        return name in saved_run and name in wanted_run and saved_run[name] != wanted_run[name]

    for field in config_class.fields(config_lib.REFUSED):
        if changed(field):
            problems.append(f"{_flag(field.name, wanted_run[field.name])} here, "
                            f"{_flag(field.name, saved_run[field.name])} in the checkpoint: "
                            f"{field.metadata['why']}")
    notes = [f"--{f.name}={wanted_run[f.name]:g} replaces the checkpoint's {saved_run[f.name]:g}."
             for f in config_class.fields(config_lib.APPLIED) if changed(f)]
    if "xla" in saved_run and saved_run["xla"] != wanted_run.get("xla"):
        made, now = (("XLA", "plain TensorFlow") if saved_run["xla"]
                     else ("plain TensorFlow", "XLA"))
        notes.append(f"Note: the checkpoint's run drew its noise with {made}, this one with "
                     f"{now} (--xla only applies with --strategy=default): the same generator "
                     "state gives other numbers there, so from here on this run differs from "
                     "an uninterrupted one (same distributions; each is deterministic).")
    return problems, notes
