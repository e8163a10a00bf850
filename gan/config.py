"""The training configuration: one plain object that library code takes instead of flags."""

import dataclasses
import json
import os

from gan import datasets
from gan.models import registry

STRATEGIES = ("default", "mirrored", "multi_worker")  # gan.training.distribute makes them
PENALTY_WEIGHTS = ("gp_weight", "r1", "r2")  # the fields weighting a loss's penalty on D


# How a field may change when a run resumes from a checkpoint (gan.training.resume reads these):
FREE = "free"  # not recorded: it does not change what is computed (folders, cadences, speed)
ARCHITECTURE = "architecture"  # recorded; must match, the checkpoint's variables follow from it
# recorded only when not its default, so checkpoints made before the field existed resume
ARCHITECTURE_IF_SET = "architecture_if_set"
REFUSED = "refused"  # recorded under "run"; a change is refused with the field's `why`
APPLIED = "applied"  # recorded under "run" (where `recorded` says it has an effect); a
# change applies from the resumed step on and is logged


def option(default, help, resume=FREE, why=None, recorded=None):
    """A TrainConfig field: its default, its flag's help, and how a resume treats it (see
    above; `why`: the reason a REFUSED change is refused; `recorded(config)`: whether an
    APPLIED field has an effect in this run, so is recorded). gan.train makes one flag of
    each field, and gan.training.resume reads the rest: a new option is one field here."""
    return dataclasses.field(default=default, metadata=dict(help=help, resume=resume, why=why,
                                                            recorded=recorded))


_DATA_POSITION = ("the training data's position after each step is steps x --batch_size "
                  "x --d_steps, so the resumed run would skip or repeat training data")


@dataclasses.dataclass
class TrainConfig:
    """Everything a training run needs to know, and the one source of gan.train's flags.
    Defaults reproduce the original script."""

    epochs: int = option(
        10000,
        "Training iterations, as in the original script: ONE 'epoch' is one iteration on one "
        "batch (not a pass over the dataset). --epochs=10000 does what `python main.py` did.")
    batch_size: int = option(
        32,
        "Real (and fake) images per iteration: the global batch, split over the replicas of "
        "--strategy.",
        REFUSED, _DATA_POSITION)
    noise_dim: int = option(100, "Size of the generator's noise input.", ARCHITECTURE)
    model: str = option(
        "mlp",
        "Architecture: 'mlp' is the original's; 'mlp_large' a deeper, wider MLP with "
        "LeakyReLU; 'dcgan' convolutional (see gan/models/networks.py).",
        ARCHITECTURE)
    dataset: str = option(
        "mnist",
        "TFDS dataset: mnist or fashion_mnist; or stacked_mnist (three random MNIST digits as "
        "the channels of one 28x28x3 image: 1,000 modes; gan.datasets.stacked).",
        ARCHITECTURE)
    data_dir: str | None = option(
        None,
        "TFDS data folder (default: $TFDS_DATA_DIR, else ~/tensorflow_datasets). See "
        "`python -m gan.data --help` to prepare it offline from the IDX files.")
    seed: int = option(
        0, "Seed of weights, noise and data order.", REFUSED,
        "it fixes the order of the training data (and --clusters' k-means clusters), so the "
        "resumed run would train on other batches than the run it continues")
    g_learning_rate: float = option(1e-3, "Generator Adam learning rate.")
    d_learning_rate: float = option(1e-3, "Discriminator Adam learning rate.")
    beta_1: float = option(0.9, "Adam beta_1 of both optimizers.", APPLIED)
    beta_2: float = option(0.999, "Adam beta_2 of both optimizers.", APPLIED)
    image_dir: str = option("gan_images", "Where generated_<epoch>.png strips are written.")
    save_every: int = option(100, "Write an image strip at every epoch that is a multiple of "
                                  "this.")
    num_images: int = option(
        10, "Digits per image strip.", REFUSED,
        "the checkpoint's fixed noise of the image strips has one row per image")
    checkpoint_dir: str = option(
        "checkpoints", "Checkpoint folder; a rerun resumes from its latest checkpoint.")
    checkpoint_every: int = option(1000, "Save a checkpoint every this many epochs (and at the "
                                         "end).")
    keep_checkpoints: int = option(3, "How many recent checkpoints to keep.")
    steps_per_call: int = option(
        100, "Iterations per compiled call (speed only; results do not depend on it).")
    # Whether the loop is XLA-compiled is recorded by gan.training.resume itself (it notes a change
    # of the noise's draws), from --xla and --strategy together.
    xla: bool = option(True, "Compile the training loop with XLA (jit_compile).")
    # XLA's persistent compilation cache (gan.training.compilation): None = $GAN_CACHE_DIR/xla, else
    # ~/.cache/gan/xla (used if writable); "" = off. Speed only.
    xla_cache_dir: str | None = option(
        None,
        "Folder where XLA keeps compiled training loops, so that a rerun with the same "
        "settings starts 1-2 s sooner on 2 CPU cores (default: $GAN_CACHE_DIR/xla, else "
        "~/.cache/gan/xla). Empty (--xla_cache_dir=) turns it off. Speed only: results are "
        "the same.")
    log_every_secs: float = option(10.0, "Seconds between progress lines.")
    logs_dir: str = option(
        "",
        "TensorBoard logs, metrics history (metrics.jsonl), and at the end the loss plot "
        "(losses.png) and animated strips (progress.gif). Default: <checkpoint_dir>/logs. "
        "Watch a run with `tensorboard --logdir <checkpoint_dir>/logs`.")
    quiet: bool = option(False, "Print no progress lines (start, end and warnings still "
                                "print).")
    eval_every: int = option(
        0,
        "Every this many epochs, judge --eval_samples generated images with the classifier "
        "of --dataset and log the metrics of `python -m gan.evaluate` (0 = never).")
    eval_samples: int = option(2000, "Generated images per --eval_every evaluation.")
    # How this run's generator is sampled, not trained: --eval_every uses it, and the
    # checkpoint records it for gan.evaluate, gan.sample and gan.study (their --truncation
    # overrides it). A checkpoint made before it existed records none: 0.
    truncation: float = option(
        0.0,
        "Sampling truncation of this run's generator: --eval_every, and later gan.evaluate, "
        "gan.sample and gan.study (which read it from the checkpoint), draw the noise from "
        "N(0, 1) truncated to [-t, t] (the truncation trick: better-formed images, less "
        "variety). 0 = plain N(0, 1). Training itself always draws plain N(0, 1); a resumed "
        "run may change it.",
        APPLIED)
    # tf.config.experimental.enable_op_determinism() for the whole process (it cannot be
    # turned off again). Off by default: it cost roughly 20-50% of the speed in a short CPU
    # run (README).
    deterministic: bool = option(
        False,
        "TensorFlow op determinism: the same seed gives bit-identical weights, also after an "
        "interruption and resume (slower; see docs/reliability.md).")
    # Beyond the original: recipes in experiments/*.flags use these (gan.models.networks,
    # gan.models.losses).
    conditional: bool = option(
        False, "Class-conditional GAN: G and D take the digit label; strips show 0-9.",
        ARCHITECTURE)
    # Self-conditioning: no label is used, generation stays unconditional.
    clusters: int = option(
        0,
        "With --conditional: condition on each training image's k-means cluster (this many "
        "clusters of the pixels) instead of its digit label, so no label is used "
        "(self-conditioning); samples are drawn with the clusters' sizes. 0 = off. Part of "
        "the checkpoint.",
        ARCHITECTURE_IF_SET)
    loss: str = option(
        "bce",
        "GAN loss: 'bce' (the original's, non-saturating), 'hinge', 'wgan-gp' or 'rpgan' "
        "(R3GAN's relativistic pairing loss, with --r1 and --r2).",
        ARCHITECTURE)
    gp_weight: float = option(10.0, "Gradient-penalty weight of --loss=wgan-gp.", APPLIED,
                              recorded=lambda config: registry.reads(config.loss, "gp_weight"))
    r1: float = option(
        0.0,
        "With --loss=rpgan: weight gamma of the R1 penalty, gamma / 2 x E ||grad D(x)||^2 at "
        "the real images (0 = off). R3GAN uses --r1 and --r2 with the same gamma.",
        APPLIED, recorded=lambda config: registry.reads(config.loss, "r1"))
    r2: float = option(
        0.0,
        "With --loss=rpgan: weight gamma of the R2 penalty, gamma / 2 x E ||grad D(x)||^2 at "
        "the generated images (0 = off).",
        APPLIED, recorded=lambda config: registry.reads(config.loss, "r2"))
    penalty_every: int = option(
        1,
        "Lazy regularization (StyleGAN2, Karras et al. 2020): D's penalty (--r1/--r2 of "
        "--loss=rpgan, the gradient penalty of --loss=wgan-gp) in one iteration of N only, "
        "weighted N there: the same gradient on average at about 1/N of the penalty's cost. "
        "1 = every iteration.",
        APPLIED, recorded=lambda config: any(registry.reads(config.loss, name)
                                             for name in PENALTY_WEIGHTS))
    spectral_norm: bool = option(False, "Spectral normalisation of the discriminator's "
                                        "layers.", ARCHITECTURE)
    minibatch_std: bool = option(
        False,
        "Give the discriminator the spread of features over each group of 4 samples "
        "(minibatch standard deviation, against mode collapse); --batch_size must be a "
        "multiple of 4.",
        ARCHITECTURE)
    d_steps: int = option(
        1, "Discriminator updates per generator update (each on its own real batch).",
        REFUSED, _DATA_POSITION)
    ema: bool = option(
        False,
        "Keep an exponential moving average of the generator's weights (in the checkpoint); "
        "images and evaluation use it.",
        ARCHITECTURE)
    ema_decay: float = option(0.999, "Decay of --ema per generator update.", APPLIED,
                              recorded=lambda config: config.ema)
    diversity: float = option(
        0.0,
        "Weight of the mode-seeking term (MSGAN, Mao et al. 2019): G also minimizes "
        "1 / (mean |G(z1) - G(z2)| / mean |z1 - z2|) over pairs of its batch (with "
        "--conditional each pair shares a label), for more variety per label. 0 = off; "
        "--batch_size must be even.",
        APPLIED)
    aux_classifier: float = option(
        0.0,
        "AC-GAN (Odena et al. 2017): weight of an auxiliary classifier loss. D also "
        "predicts each image's label (a softmax head on its features) and learns it on the "
        "real images; G's loss adds this weight times the cross-entropy of its fakes' "
        "predicted labels against the ones asked of them, so each class is drawn more "
        "recognisably. 0 = off; needs --conditional, not --pack.",
        ARCHITECTURE_IF_SET)
    # Scaling out (gan.training.distribute; docs/scaling.md).
    strategy: str = option(
        "default",
        "tf.distribute strategy: 'default' (one device), 'mirrored' (all local GPUs, or the "
        "--cpu_devices logical CPUs) or 'multi_worker' (hosts and this worker's task from "
        "$TF_CONFIG). --batch_size is the global batch, split evenly over the replicas.")
    cpu_devices: int = option(
        0,
        "Split the CPU into this many logical devices (0 = off), e.g. to run "
        "--strategy=mirrored on a machine without GPUs.")
    # Loss-scale optimizers wrap the Adams: other variables, so part of the architecture.
    mixed_precision: bool = option(
        False,
        "Compute in float16 (Keras policy mixed_float16; variables and losses stay float32) "
        "with dynamic loss scaling; for GPUs. Part of the checkpoint: a run resumes only "
        "with the same setting.",
        ARCHITECTURE_IF_SET)
    # PacGAN (Lin et al. 2018).
    pack: int = option(
        1,
        "PacGAN: D judges packs of this many samples (real with real, fake with fake) "
        "concatenated along the channels; 1 = off. --batch_size counts images and must be a "
        "multiple of it.",
        ARCHITECTURE_IF_SET)

    @classmethod
    def fields(cls, resume=None):
        """The dataclass fields of the options, in order; with `resume`, only those a resume
        treats that way."""
        return [f for f in dataclasses.fields(cls)
                if resume is None or f.metadata["resume"] == resume]

    def validate(self):
        """Raises ValueError naming the first bad field (by its flag name). Pure: it makes
        no folder and imports nothing (see check_folders)."""
        positive = ("epochs", "batch_size", "noise_dim", "save_every", "num_images",
                    "checkpoint_every", "keep_checkpoints", "steps_per_call", "d_steps")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"--{name} must be positive, got {getattr(self, name)}")
        for name in ("g_learning_rate", "d_learning_rate"):
            if not getattr(self, name) > 0:
                raise ValueError(f"--{name} must be positive, got {getattr(self, name)}")
        for name in ("beta_1", "beta_2"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"--{name} must be in [0, 1), got {getattr(self, name)}")
        if self.eval_every < 0:
            raise ValueError(f"--eval_every must be 0 (off) or positive, got {self.eval_every}")
        if not self.truncation >= 0:
            raise ValueError(f"--truncation must be >= 0 (0 = off), got {self.truncation}")
        if self.eval_samples < 10:  # eval_lib.MIN_IMAGES; a 3-NN manifold needs a few points
            raise ValueError(f"--eval_samples must be at least 10, got {self.eval_samples}")
        registry.check(registry.NETWORKS, self.model, "model")
        registry.check(registry.LOSSES, self.loss, "loss")
        if self.minibatch_std and self.batch_size % 4:
            raise ValueError(f"--minibatch_std needs --batch_size to be a multiple of 4 (its "
                             f"group size), got {self.batch_size}")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"--strategy must be one of {', '.join(STRATEGIES)}, "
                             f"got '{self.strategy}'")
        if self.cpu_devices < 0:
            raise ValueError(f"--cpu_devices must be 0 (off) or positive, got {self.cpu_devices}")
        if not 0 < self.ema_decay < 1:
            raise ValueError(f"--ema_decay must be in (0, 1), got {self.ema_decay}")
        if self.clusters < 0 or self.clusters == 1:
            raise ValueError(f"--clusters must be 0 (off) or at least 2, got {self.clusters}")
        if self.clusters and not self.conditional:
            raise ValueError("--clusters trains the conditional networks on k-means clusters "
                             "instead of digits: give --conditional too")
        for name in PENALTY_WEIGHTS:
            if not getattr(self, name) >= 0:
                raise ValueError(f"--{name} must be >= 0, got {getattr(self, name)}")
        for name in ("r1", "r2"):  # off by default: set with a loss that ignores it, a mistake
            if getattr(self, name) and not registry.reads(self.loss, name):
                readers = [loss for loss in registry.LOSSES if registry.reads(loss, name)]
                raise ValueError(f"--{name} is a penalty of --loss={' or '.join(readers)}, "
                                 f"not of --loss={self.loss}: leave it at 0")
        if self.penalty_every < 1:
            raise ValueError(f"--penalty_every must be at least 1 (1 = every iteration), "
                             f"got {self.penalty_every}")
        penalised = [loss for loss in registry.LOSSES
                     if any(registry.reads(loss, name) for name in PENALTY_WEIGHTS)]
        if self.penalty_every > 1 and self.loss not in penalised:
            raise ValueError(f"--penalty_every spaces out the penalty of --loss="
                             f"{' or '.join(penalised)}; --loss={self.loss} has none: "
                             f"leave it at 1")
        if not self.diversity >= 0:
            raise ValueError(f"--diversity must be >= 0 (0 = off), got {self.diversity}")
        if self.diversity and self.batch_size % 2:
            raise ValueError(f"--diversity compares the batch's samples in pairs: "
                             f"--batch_size must be even, got {self.batch_size}")
        if not self.aux_classifier >= 0:
            raise ValueError(f"--aux_classifier must be >= 0 (0 = off), got "
                             f"{self.aux_classifier}")
        if self.aux_classifier and not self.conditional:
            raise ValueError("--aux_classifier teaches D the labels of a conditional model: "
                             "give --conditional too")
        if self.aux_classifier and self.pack > 1:
            raise ValueError(f"--aux_classifier classifies single images; D sees packs of "
                             f"{self.pack} with --pack={self.pack}: leave one of them off")
        datasets.get(self.dataset)  # ValueError naming --dataset
        self._validate_pack()

    def _validate_pack(self):
        """--pack, and a --dataset whose classes are its modes, against the options they
        cannot serve."""
        if self.pack < 1:
            raise ValueError(f"--pack must be 1 (off) or more, got {self.pack}")
        if self.batch_size % self.pack:
            raise ValueError(f"--pack={self.pack} needs --batch_size to be a multiple of it "
                             f"(D judges batch_size / pack packs), got {self.batch_size}")
        if self.pack > 1 and not registry.LOSSES[self.loss].packs:
            raise ValueError(f"--pack cannot be combined with --loss={self.loss}: its "
                             "penalty is defined per sample, not per pack")
        if self.pack > 1 and self.minibatch_std and (self.batch_size // self.pack) % 4:
            raise ValueError(f"--minibatch_std with --pack={self.pack} needs --batch_size / "
                             f"--pack to be a multiple of 4, got {self.batch_size}")
        spec = datasets.get(self.dataset)
        if not spec.conditional_on_classes and self.conditional and not self.clusters:
            # A generator asked for each digit triple covers every mode by construction: the
            # benchmark measures unconditional mode collapse. Self-conditioning on k-means
            # clusters (--clusters) uses no label, so it is allowed.
            raise ValueError(f"--dataset={spec.name} measures mode collapse of an "
                             f"unconditional generator: --conditional on the {spec.words[1]} "
                             f"would hand it the {spec.num_modes:,} modes; use it only with "
                             "--clusters")

    def check_folders(self):
        """Raises ValueError naming the flag of an output folder of the run that cannot be
        created or written. Creates none: each is made when first written, so a run refused
        before then leaves no new folder behind."""
        for name in ("image_dir", "checkpoint_dir"):
            check_writable_dir(getattr(self, name), name)
        if self.xla_cache_dir:  # asked for by name: it must work (the default is best effort)
            check_writable_dir(self.xla_cache_dir, "xla_cache_dir")
        check_writable_dir(self.resolved_logs_dir(), "logs_dir")

    def resolved_logs_dir(self):
        """--logs_dir, or <checkpoint_dir>/logs when it is empty: a run's logs and metrics
        history stay with the checkpoints they must agree with on a resume."""
        return self.logs_dir or os.path.join(self.checkpoint_dir, "logs")

    def resolved_xla_cache_dir(self):
        """--xla_cache_dir, or when None the folder "xla" in gan.files.cache_dir() ("" = off)."""
        if self.xla_cache_dir is not None:
            return self.xla_cache_dir
        from gan import files

        return os.path.join(files.cache_dir(), "xla")

    @property
    def num_classes(self):
        """How many labels the conditional networks take (Dataset.label_count)."""
        return datasets.get(self.dataset).label_count(self.clusters)

    @property
    def label_parts(self):
        """Parts of a conditional network's label (Dataset.label_parts)."""
        return datasets.get(self.dataset).label_parts(self.clusters)

    @property
    def channels(self):
        """Channels of the dataset's images (Dataset.channels)."""
        return datasets.get(self.dataset).channels

    @property
    def image_shape(self):
        """Shape of one of the dataset's images (Dataset.image_shape)."""
        return datasets.get(self.dataset).image_shape

    def architecture(self):
        """JSON of the fields a checkpoint must agree with to be resumed: the ARCHITECTURE
        fields, and the ARCHITECTURE_IF_SET ones that differ from their defaults."""
        fields = {f.name: getattr(self, f.name) for f in self.fields(ARCHITECTURE)}
        fields.update({f.name: getattr(self, f.name) for f in self.fields(ARCHITECTURE_IF_SET)
                       if getattr(self, f.name) != f.default})
        return json.dumps(fields, sort_keys=True)


def check_writable_dir(path, flag):
    """Raises ValueError naming `flag` if `path` cannot be created or written (creating
    nothing)."""
    from gan import files

    problem = files.creatable_dir_problem(path)
    if problem:
        raise ValueError(f"--{flag}={path} {problem}")
