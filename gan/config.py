"""The training configuration: one plain object that library code takes instead of flags."""

import dataclasses
import json
import os

from gan import datasets

MODELS = ("mlp", "mlp_large", "dcgan")  # as gan.models.MODELS (not imported: keras is heavy)
LOSSES = ("bce", "hinge", "wgan-gp")  # as gan.losses.LOSSES
STRATEGIES = ("default", "mirrored", "multi_worker")  # as gan.distribute.STRATEGIES


@dataclasses.dataclass
class TrainConfig:
    """Everything a training run needs to know. Defaults reproduce the original script."""

    epochs: int = 10000  # iterations, one batch each (the original's meaning of "epoch")
    batch_size: int = 32
    noise_dim: int = 100
    model: str = "mlp"
    dataset: str = "mnist"
    data_dir: str | None = None
    seed: int = 0
    g_learning_rate: float = 1e-3
    d_learning_rate: float = 1e-3
    beta_1: float = 0.9
    beta_2: float = 0.999
    image_dir: str = "gan_images"
    save_every: int = 100
    num_images: int = 10
    checkpoint_dir: str = "checkpoints"
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    steps_per_call: int = 100
    xla: bool = True
    # XLA's persistent compilation cache (gan.compilation): None = $GAN_CACHE_DIR/xla, else
    # ~/.cache/gan/xla (used if writable); "" = off. Speed only.
    xla_cache_dir: str | None = None
    log_every_secs: float = 10.0
    logs_dir: str = ""  # TensorBoard logs and metrics history; "" means <checkpoint_dir>/logs
    quiet: bool = False  # no progress lines
    eval_every: int = 0  # log sample-quality metrics every this many epochs; 0 = never
    eval_samples: int = 2000  # generated digits per such evaluation
    # tf.config.experimental.enable_op_determinism() for the whole process (it cannot be
    # turned off again): same seed, same bits, also across an interrupted and resumed run.
    # Off by default: it cost roughly 20-50% of the speed in a short CPU run (README).
    deterministic: bool = False
    # Beyond the original (see gan.models, gan.losses and experiments/).
    conditional: bool = False  # G and D take the digit label
    # With conditional and clusters=K > 0: the networks are conditioned on each training
    # image's k-means cluster (data.cluster_labels) instead of its digit, so no label is
    # used (self-conditioning): unconditional generation, sampled by the clusters' sizes.
    clusters: int = 0
    loss: str = "bce"  # bce (the original's, non-saturating), hinge or wgan-gp
    gp_weight: float = 10.0  # WGAN-GP's penalty weight (lambda)
    spectral_norm: bool = False  # spectral normalisation of D's Dense/Conv layers
    minibatch_std: bool = False  # D sees each group of 4 samples' feature spread
    d_steps: int = 1  # discriminator updates per generator update, each on its own real batch
    ema: bool = False  # keep an exponential moving average of G's weights, sample from it
    ema_decay: float = 0.999
    # Mode-seeking term (MSGAN): G also minimizes diversity / (how far apart two of its
    # images are per unit of noise distance); 0 = off. Against conditional collapse.
    diversity: float = 0.0
    # Scaling out (gan.distribute): tf.distribute strategy, logical CPU devices for it on a
    # machine without GPUs (0 = leave the CPU whole), float16 compute with loss scaling.
    strategy: str = "default"
    cpu_devices: int = 0
    mixed_precision: bool = False
    # PacGAN (Lin et al. 2018): D judges packs of this many samples, concatenated along the
    # channels; 1 = off (the original's D). --batch_size counts images, a multiple of it.
    pack: int = 1

    # Fields whose change makes an existing checkpoint unusable for this run.
    ARCHITECTURE_FIELDS = ("model", "noise_dim", "dataset", "conditional", "loss",
                           "spectral_norm", "minibatch_std", "ema")
    # Also recorded, but only when set: checkpoints made before they existed stay resumable.
    # (--mixed_precision wraps the optimizers in loss-scale optimizers: other variables.)
    OPTIONAL_ARCHITECTURE_FIELDS = ("mixed_precision", "clusters", "pack")

    def validate(self):
        """Raises ValueError naming the first bad field (by its flag name). Pure: it makes
        no folder and imports nothing (see make_folders)."""
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
        if self.eval_samples < 10:  # eval_lib.MIN_IMAGES; a 3-NN manifold needs a few points
            raise ValueError(f"--eval_samples must be at least 10, got {self.eval_samples}")
        if self.model not in MODELS:
            raise ValueError(f"--model must be one of {', '.join(MODELS)}, got '{self.model}'")
        if self.loss not in LOSSES:
            raise ValueError(f"--loss must be one of {', '.join(LOSSES)}, got '{self.loss}'")
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
        if not self.gp_weight >= 0:
            raise ValueError(f"--gp_weight must be >= 0, got {self.gp_weight}")
        if not self.diversity >= 0:
            raise ValueError(f"--diversity must be >= 0 (0 = off), got {self.diversity}")
        if self.diversity and self.batch_size % 2:
            raise ValueError(f"--diversity compares the batch's samples in pairs: "
                             f"--batch_size must be even, got {self.batch_size}")
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
        if self.pack > 1 and self.loss == "wgan-gp":
            raise ValueError("--pack cannot be combined with --loss=wgan-gp: the gradient "
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

    def make_folders(self):
        """Creates the run's output folders; raises ValueError naming the flag of one that
        cannot be created or written."""
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
        """JSON of the fields a checkpoint must agree with to be resumed."""
        fields = {k: getattr(self, k) for k in self.ARCHITECTURE_FIELDS}
        defaults = TrainConfig.__dataclass_fields__
        fields.update({k: getattr(self, k) for k in self.OPTIONAL_ARCHITECTURE_FIELDS
                       if getattr(self, k) != defaults[k].default})
        return json.dumps(fields, sort_keys=True)


def check_writable_dir(path, flag):
    """Raises ValueError naming `flag` if `path` cannot be created or written."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise ValueError(f"--{flag}={path} cannot be created: {e.strerror}") from None
    if not os.path.isdir(path) or not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(f"--{flag}={path} is not a writable folder")
