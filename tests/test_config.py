"""The configuration as the one source of gan.train's flags and of a checkpoint's record."""

import dataclasses
import glob
import json
import os

import pytest
from absl import flags

from conftest import REPO
from gan import config as config_lib
from gan import train
from gan.training import resume

# What a checkpoint of each recipe in experiments/ (and of the default run) records: moving
# code must not change it, or checkpoints made before would no longer resume.
RECORDS = {
    "default": {
        'conditional': False, 'dataset': 'mnist', 'ema': False, 'loss': 'bce',
        'minibatch_std': False, 'model': 'mlp', 'noise_dim': 100,
        'run': {'batch_size': 32, 'beta_1': 0.9, 'beta_2': 0.999, 'd_steps': 1, 'diversity': 0.0,
                'num_images': 10, 'seed': 0, 'truncation': 0.0, 'xla': True},
        'spectral_norm': False},
    "best_unconditional": {
        'clusters': 300, 'conditional': True, 'dataset': 'mnist', 'ema': True, 'loss': 'bce',
        'minibatch_std': True, 'model': 'mlp_large', 'noise_dim': 100,
        'run': {'batch_size': 64, 'beta_1': 0.5, 'beta_2': 0.999, 'd_steps': 1, 'diversity': 0.3,
                'ema_decay': 0.999, 'num_images': 10, 'seed': 0, 'truncation': 0.0, 'xla': True},
        'spectral_norm': False},
    "conditional": {
        'aux_classifier': 5.0, 'conditional': True, 'dataset': 'mnist', 'ema': True, 'loss': 'bce',
        'minibatch_std': True, 'model': 'dcgan', 'noise_dim': 100,
        'run': {'batch_size': 64, 'beta_1': 0.5, 'beta_2': 0.999, 'd_steps': 1, 'diversity': 0.6,
                'ema_decay': 0.999, 'num_images': 10, 'seed': 0, 'truncation': 0.0, 'xla': False},
        'spectral_norm': False},
    "fashion_mnist": {
        'conditional': True, 'dataset': 'fashion_mnist', 'ema': True, 'loss': 'rpgan',
        'minibatch_std': True, 'model': 'dcgan', 'noise_dim': 100,
        'run': {'batch_size': 64, 'beta_1': 0.5, 'beta_2': 0.999, 'd_steps': 1, 'diversity': 0.0,
                'ema_decay': 0.999, 'num_images': 10, 'penalty_every': 4, 'r1': 0.1, 'r2': 0.1,
                'seed': 0, 'truncation': 1.9, 'xla': False},
        'spectral_norm': False},
    "mlp_large": {
        'conditional': False, 'dataset': 'mnist', 'ema': True, 'loss': 'bce', 'minibatch_std': True,
        'model': 'mlp_large', 'noise_dim': 100,
        'run': {'batch_size': 64, 'beta_1': 0.5, 'beta_2': 0.999, 'd_steps': 1, 'diversity': 0.0,
                'ema_decay': 0.999, 'num_images': 10, 'seed': 0, 'truncation': 0.0, 'xla': True},
        'spectral_norm': False},
    "mlp_tuned": {
        'conditional': False, 'dataset': 'mnist', 'ema': True, 'loss': 'wgan-gp',
        'minibatch_std': False, 'model': 'mlp', 'noise_dim': 100,
        'run': {'batch_size': 64, 'beta_1': 0.5, 'beta_2': 0.9, 'd_steps': 5, 'diversity': 0.0,
                'ema_decay': 0.999, 'gp_weight': 10.0, 'num_images': 10, 'penalty_every': 1,
                'seed': 0, 'truncation': 0.0, 'xla': True},
        'spectral_norm': False},
    "stacked_mnist": {
        'clusters': 30, 'conditional': True, 'dataset': 'stacked_mnist', 'ema': True, 'loss': 'bce',
        'minibatch_std': False, 'model': 'dcgan', 'noise_dim': 100, 'pack': 2,
        'run': {'batch_size': 64, 'beta_1': 0.5, 'beta_2': 0.999, 'd_steps': 1, 'diversity': 0.0,
                'ema_decay': 0.999, 'num_images': 10, 'seed': 0, 'truncation': 0.0, 'xla': False},
        'spectral_norm': False},
    "stacked_mnist_rpgan": {
        'clusters': 30, 'conditional': True, 'dataset': 'stacked_mnist', 'ema': True,
        'loss': 'rpgan', 'minibatch_std': False, 'model': 'dcgan', 'noise_dim': 100, 'pack': 2,
        'run': {'batch_size': 64, 'beta_1': 0.5, 'beta_2': 0.999, 'd_steps': 1, 'diversity': 0.0,
                'ema_decay': 0.999, 'num_images': 10, 'penalty_every': 4, 'r1': 0.1,
                'r2': 0.1, 'seed': 0, 'truncation': 0.0, 'xla': False},
        'spectral_norm': False},
}
RECORDS["original"] = RECORDS["default"]  # experiments/original.flags is the default run


def test_every_recipe_records_what_its_checkpoints_hold(train_flags):
    recipes = sorted(os.path.basename(p)[:-len(".flags")]
                     for p in glob.glob(os.path.join(REPO, "experiments", "*.flags")))
    assert sorted(RECORDS) == sorted(["default", *recipes])  # a new recipe is pinned too
    for name, expected in RECORDS.items():
        args = [] if name == "default" else [
            f"--flagfile={os.path.join(REPO, 'experiments', name + '.flags')}"]
        assert json.loads(resume.record(train_flags(*args))) == expected, name


def test_each_field_is_one_flag_with_its_default_and_help():
    names = [f.name for f in config_lib.TrainConfig.fields()]
    assert names == [f.name for f in dataclasses.fields(config_lib.TrainConfig)]
    for field in config_lib.TrainConfig.fields():
        flag = train.FLAGS[field.name]
        assert flag.default == field.default, field.name
        assert flag.help == field.metadata["help"] and flag.help, field.name


def test_a_new_option_is_one_field(tmp_path):
    """A field added to the config becomes a flag of its type, parsed into the config, and
    the record of a run follows its `resume` kind, with no other code touched."""

    @dataclasses.dataclass
    class Extended(config_lib.TrainConfig):
        warmup: int = config_lib.option(0, "Warm-up iterations.", config_lib.REFUSED,
                                        "the warm-up changes every later step")
        temperature: float = config_lib.option(
            1.0, "Softmax temperature.", config_lib.APPLIED,
            recorded=lambda config: config.loss == "hinge")
        width: int = config_lib.option(64, "Width of a new network.",
                                       config_lib.ARCHITECTURE_IF_SET)

    values = flags.FlagValues()
    train.define_flags(Extended, values)
    values(["gan.train", "--warmup=7", "--temperature=0.5", "--loss=hinge", "--epochs=3"])
    config = train.config_from_flags(Extended, values)
    assert (config.warmup, config.temperature, config.loss, config.epochs) == (7, 0.5, "hinge", 3)
    assert "Warm-up iterations." in values["warmup"].help
    with pytest.raises(flags.IllegalFlagValueError):
        values["warmup"].parse("seven")

    record = json.loads(resume.record(config))
    assert record["run"]["warmup"] == 7 and record["run"]["temperature"] == 0.5
    assert "width" not in record  # its default: not recorded, older checkpoints resume
    assert json.loads(resume.record(dataclasses.replace(config, width=32)))["width"] == 32
    assert "temperature" not in json.loads(
        resume.record(dataclasses.replace(config, loss="bce")))["run"]
    problems, notes = resume.check(resume.record(config),
                                   resume.record(dataclasses.replace(config, warmup=8,
                                                                     temperature=0.25)),
                                   Extended)
    assert problems == ["--warmup=8 here, --warmup=7 in the checkpoint: the warm-up changes "
                        "every later step"]
    assert notes == ["--temperature=0.25 replaces the checkpoint's 0.5."]


def test_the_step_reads_the_config_it_was_made_with():
    from gan.training import step as step_lib

    config = config_lib.TrainConfig(loss="hinge", d_steps=2, diversity=0.5)
    state = step_lib.create_state(config)
    assert state.config is config
    assert json.loads(state.architecture.numpy()) == json.loads(resume.record(config))


@pytest.mark.parametrize("options, message", [
    (dict(r1=1.0), "--r1 is a penalty of --loss=rpgan, not of --loss=bce: leave it at 0"),
    (dict(loss="hinge", r2=0.5), "--r2 is a penalty of --loss=rpgan, not of --loss=hinge"),
    (dict(loss="rpgan", r1=-1.0), "--r1 must be >= 0, got -1.0"),
    (dict(loss="rpgan", r2=float("nan")), "--r2 must be >= 0, got nan"),
    (dict(loss="rpgan", penalty_every=0), "--penalty_every must be at least 1"),
    (dict(loss="hinge", penalty_every=4),
     "--penalty_every spaces out the penalty of --loss=wgan-gp or rpgan; --loss=hinge has "
     "none: leave it at 1"),
])
def test_penalty_settings_are_refused_naming_the_flag_unless_the_loss_has_that_penalty(options, message):
    with pytest.raises(ValueError, match=f"^{message}"):
        config_lib.TrainConfig(**options).validate()
    config_lib.TrainConfig(loss="rpgan", r1=1.0, r2=1.0, pack=2, conditional=True).validate()
    config_lib.TrainConfig(loss="rpgan").validate()  # without penalties: allowed


@pytest.mark.parametrize("options, message", [
    (dict(conditional=True, aux_classifier=-0.5), r"--aux_classifier must be >= 0 \(0 = off\)"),
    (dict(aux_classifier=1.0), "--aux_classifier teaches D the labels of a conditional model: "
                               "give --conditional too"),
    (dict(conditional=True, aux_classifier=1.0, pack=2),
     "--aux_classifier classifies single images; D sees packs of 2 with --pack=2"),
])
def test_an_auxiliary_classifier_is_refused_naming_the_flag_where_it_cannot_work(options,
                                                                                message):
    with pytest.raises(ValueError, match=f"^{message}"):
        config_lib.TrainConfig(**options).validate()
    config_lib.TrainConfig(conditional=True, aux_classifier=1.0).validate()


def test_an_auxiliary_classifier_is_part_of_the_architecture_only_when_on():
    """Its head is variables of D: a checkpoint records the setting and a resume must agree;
    checkpoints made without it record nothing new, so they resume as before."""
    assert "aux_classifier" not in json.loads(config_lib.TrainConfig().architecture())
    on = config_lib.TrainConfig(conditional=True, aux_classifier=0.5)
    assert json.loads(on.architecture())["aux_classifier"] == 0.5


def test_r1_and_r2_are_recorded_only_with_rpgan_and_a_change_applies():
    rpgan = config_lib.TrainConfig(loss="rpgan", r1=1.0, r2=2.0)
    run = json.loads(resume.record(rpgan))["run"]
    assert (run["r1"], run["r2"]) == (1.0, 2.0) and "gp_weight" not in run
    assert "r1" not in json.loads(resume.record(config_lib.TrainConfig()))["run"]
    # --penalty_every: recorded with a loss that has a penalty
    assert run["penalty_every"] == 1
    assert "penalty_every" not in json.loads(resume.record(config_lib.TrainConfig()))["run"]
    lazy = dataclasses.replace(rpgan, penalty_every=4)
    assert json.loads(resume.record(lazy))["run"]["penalty_every"] == 4
    assert resume.check(resume.record(lazy), resume.record(rpgan)) == (
        [], ["--penalty_every=1 replaces the checkpoint's 4."])
    problems, notes = resume.check(resume.record(rpgan), resume.record(
        dataclasses.replace(rpgan, r1=0.5)))
    assert problems == [] and notes == ["--r1=0.5 replaces the checkpoint's 1."]


def test_validation_imports_no_tensorflow():
    import subprocess
    import sys

    code = ("import sys; from gan import config; from gan.training import resume; "
            "c = config.TrainConfig(loss='rpgan', r1=1.0, r2=1.0); c.validate(); "
            "resume.record(c); print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "False"
