"""The networks (--model) and losses (--loss) by name: what flag validation reads, without
importing TensorFlow, and where construction finds their code.

Each entry names the object that implements it as "module:attribute", imported on first use
(`network`, `loss`): a gan.models.networks.Network (the layers of a generator and a
discriminator) or a gan.models.losses.Loss (D's and G's losses and any penalty). To add one,
write that object (in gan/models/networks.py, gan/models/losses.py or a module of its own) and
add its line here; the flag, its validation, checkpoints, sampling and export follow.
"""

import dataclasses
import importlib


@dataclasses.dataclass(frozen=True)
class Entry:
    code: str  # "module:attribute" of the implementation
    # Losses only: False for one defined per sample (a gradient penalty at interpolates of
    # single images), which cannot judge PacGAN's packs of several samples (--pack).
    packs: bool = True
    # Losses only: the TrainConfig fields only this loss reads (its weights); a run records
    # them in its checkpoints only with this loss, and gan.config refuses the ones that are
    # off by default (--r1, --r2) when set with another loss.
    options: tuple = ()


NETWORKS = {
    "mlp": Entry("gan.models.networks:MLP"),  # the original's: Dense 256 in G and in D
    "mlp_large": Entry("gan.models.networks:MLP_LARGE"),
    "dcgan": Entry("gan.models.networks:DCGAN"),
}

LOSSES = {
    "bce": Entry("gan.models.losses:BCE"),  # the original's
    "hinge": Entry("gan.models.losses:HINGE"),
    "wgan-gp": Entry("gan.models.losses:WGAN_GP", packs=False, options=("gp_weight",)),
    # R1 and R2 are defined per D input, so a pack (one input of k samples) is penalised
    # like a single image.
    "rpgan": Entry("gan.models.losses:RPGAN", options=("r1", "r2")),
}


def check(table, name, flag):
    """The entry `name` of `table`; ValueError naming --`flag` and the names it accepts."""
    if name not in table:
        raise ValueError(f"--{flag} must be one of {', '.join(table)}, got '{name}'")
    return table[name]


def reads(loss_name, option):
    """Whether the loss `loss_name` reads the TrainConfig field `option` (its Entry's
    `options`); False for an unknown loss, which validation refuses by itself."""
    return option in LOSSES.get(loss_name, Entry("")).options


def _load(entry):
    module, attribute = entry.code.split(":")
    return getattr(importlib.import_module(module), attribute)


def network(name):
    """The gan.models.networks.Network called `name` (ValueError naming --model if there is
    none)."""
    return _load(check(NETWORKS, name, "model"))


def loss(name):
    """The gan.models.losses.Loss called `name` (ValueError naming --loss if there is none)."""
    return _load(check(LOSSES, name, "loss"))
