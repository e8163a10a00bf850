"""The training state and one GAN iteration.

`train_step` is the whole iteration: draw the noise, update D (d_steps times), update G,
move the EMA copy. XLA, the K-step loop and tf.distribute wrap it from outside (gan.training.loop).

Shapes: B = batch size, Z = noise size, images [B, 28, 28] in [0, 1] ([B, 28, 28, C] with C
channels), D outputs [B, 1] ([B, 1 + K] with --aux_classifier: K label logits follow);
with --pack=k D sees B/k packs [B/k, 28, 28, k*C] (`pack`) and
outputs [B/k, 1].
"""

import contextlib
import functools

import keras
import tensorflow as tf

from gan.models import losses, networks as models, registry
from gan.training import resume


class TrainState(tf.train.Checkpoint):
    """Everything a run needs, and exactly what its checkpoint holds.

    generator, discriminator: Keras models; g_optimizer, d_optimizer: their Adams (slots
    included); step: int64 count of finished iterations, which also fixes the position in
    the data stream; rng: the noise generator; fixed_noise [num_images, Z]: the noise of the
    image strips, so strips compare across epochs and resumes; architecture: JSON of the
    settings a resume must agree with; ema_generator (only with --ema): the moving average
    of the generator's weights, the one images and evaluation use; cluster_prior (only with
    --clusters): float [L], each cluster label's share of the training images (L =
    config.label_count), which sampling draws cluster ids from.

    `config` (the run's gan.config.TrainConfig, which says how the step trains) is not
    saved: the checkpoint's `architecture` records what a resume must agree with.
    """

    def __init__(self, generator, discriminator, g_optimizer, d_optimizer, rng,
                 fixed_noise, config, ema_generator=None, cluster_labels=0):
        extra = {"ema_generator": ema_generator} if ema_generator is not None else {}
        if cluster_labels:
            extra["cluster_prior"] = tf.Variable(tf.zeros([cluster_labels]), name="cluster_prior")
        super().__init__(
            generator=generator,
            discriminator=discriminator,
            g_optimizer=g_optimizer,
            d_optimizer=d_optimizer,
            step=tf.Variable(0, dtype=tf.int64, name="step"),
            rng=rng,
            fixed_noise=tf.Variable(fixed_noise, name="fixed_noise"),
            architecture=tf.Variable(resume.record(config), dtype=tf.string,
                                     name="architecture"),
            **extra,
        )
        self.ema_generator = ema_generator
        self.config = config


def create_state(config, strategy=None):
    """Models, optimizers and RNG for `config`, seeded: the same config gives bit-identical
    initial weights. With a tf.distribute `strategy` the networks and optimizers are made
    in its scope (mirrored over its replicas); the step counter, RNG and the rest are
    plain variables of this process. config.mixed_precision: float16 compute (variables
    and outputs float32), each Adam wrapped in a LossScaleOptimizer."""
    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    with scope, _dtype_policy("mixed_float16" if config.mixed_precision else None):
        generator, discriminator, optimizers, ema_generator = _build_networks(config)
    rng = tf.random.Generator.from_seed(config.seed)
    fixed_noise = tf.random.Generator.from_seed(config.seed + 1).normal(
        [config.num_images, config.noise_dim])
    return TrainState(generator, discriminator, optimizers[0], optimizers[1], rng,
                      fixed_noise, config, ema_generator,
                      config.num_classes if config.clusters else 0)


@contextlib.contextmanager
def _dtype_policy(name):
    """Keras's global dtype policy set to `name` (None: unchanged) while models are built,
    then restored, so later models in the process are unaffected."""
    if name is None:
        yield
        return
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def _build_networks(config):
    """(generator, discriminator, [g_optimizer, d_optimizer], ema_generator or None)."""
    keras.utils.set_random_seed(config.seed)  # Keras initialisers use Keras's own seed
    make_generator = functools.partial(models.make_generator, config.model, config.noise_dim,
                                       config.conditional, config.num_classes, config.channels,
                                       config.label_parts)
    generator = make_generator()
    discriminator = models.make_discriminator(
        config.model, config.conditional,
        probability_output=registry.loss(config.loss).probabilities,
        spectral_norm=config.spectral_norm, minibatch_std=config.minibatch_std,
        num_classes=config.num_classes, channels=config.channels * config.pack, pack=config.pack,
        label_parts=config.label_parts, aux_classifier=bool(config.aux_classifier))
    optimizers = []
    for lr, net in ((config.g_learning_rate, generator), (config.d_learning_rate, discriminator)):
        opt = keras.optimizers.Adam(lr, beta_1=config.beta_1, beta_2=config.beta_2)
        if config.mixed_precision:
            opt = keras.optimizers.LossScaleOptimizer(opt)
        opt.build(net.trainable_variables)  # slots exist before restore and before tracing
        optimizers.append(opt)
    ema_generator = None
    if config.ema:  # built last, so the default run's initial weights are unchanged
        ema_generator = make_generator()
        ema_generator.set_weights(generator.get_weights())
    return generator, discriminator, optimizers, ema_generator


# --- one iteration ------------------------------------------------------------------------


def train_step(state, real_images, real_labels=None):
    """One iteration on real_images [d_steps * B, 28, 28] (real_labels int32 [d_steps * B]
    for conditional models); step += 1. With the defaults it is the original's iteration.
    Returns the scalars d_loss, g_loss, d_real, d_fake (D's mean output on the real and fake
    halves, of the last D update).

    The noise comes from state.rng. XLA and plain TensorFlow turn the same generator state
    into different numbers, so runs with --xla and --noxla differ in their draws (each is
    deterministic); given the same noise, the arithmetic is the same.
    """
    batch = tf.shape(real_images)[0] // state.config.d_steps
    metrics = apply_step(state, real_images, real_labels, draw_step_noise(state, batch))
    state.step.assign_add(1)
    return metrics


def draw_step_noise(state, batch):
    """The random numbers of one iteration on batches of `batch`, from state.rng in this
    order: per D update its noise [B, Z] ("d_noise", a list) and, for a loss that
    interpolates (WGAN-GP), its interpolation weights [B, 1, 1] ("alpha", a list, else
    empty); then G's noise
    ("g_noise") and, for conditional models, the labels asked of G, int32 [B] uniform
    ("fake_labels", only then; with --diversity B/2 labels, each asked of a pair 2i, 2i+1).
    Drawn apart from apply_step so that a distributed step draws them once for the global
    batch."""
    config = state.config
    draws = {"d_noise": [], "alpha": []}
    for _ in range(config.d_steps):
        draws["d_noise"].append(state.rng.normal([batch, config.noise_dim]))
        if registry.loss(config.loss).interpolates:
            draws["alpha"].append(losses.interpolation_weights(state.rng, batch))
    draws["g_noise"] = state.rng.normal([batch, config.noise_dim])
    if config.conditional and config.diversity:  # a pair compares two images of one label
        draws["fake_labels"] = tf.repeat(
            state.rng.uniform([batch // 2], 0, config.num_classes, dtype=tf.int32), 2)
    elif config.conditional:
        draws["fake_labels"] = state.rng.uniform([batch], 0, config.num_classes, dtype=tf.int32)
    return draws


def apply_step(state, real_images, real_labels, draws):
    """train_step's updates given its random numbers (draw_step_noise); the step counter is
    left alone. Returns train_step's metrics."""
    config = state.config
    batch = tf.shape(real_images)[0] // config.d_steps
    # 1. d_steps D updates, each on its own B real images and its own noise.
    for i in range(config.d_steps):
        part = slice(i * batch, (i + 1) * batch)
        metrics = discriminator_step(
            state, real_images[part], draws["d_noise"][i],
            real_labels[part] if config.conditional else None,
            draws["alpha"][i] if draws["alpha"] else None)
    # 2. One G update through the unchanged D, on new noise (and, for a loss whose G loss
    # reads D's outputs on reals, the last D update's reals: `part`).
    metrics.update(generator_step(state, draws["g_noise"], draws.get("fake_labels"),
                                  real_images[part], real_labels[part] if config.conditional
                                  else None))
    # 3. The EMA copy follows G.
    if state.ema_generator is not None:
        update_ema(state.ema_generator, state.generator, config.ema_decay)
    return metrics


def discriminator_step(state, real_images, noise, labels=None, alpha=None):
    """D update on real images [B, 28, 28] (target 1) and G(noise [B, Z]) (target 0) with
    the loss of state.config (plus its penalty: WGAN-GP's gradient penalty interpolates
    with alpha [B, 1, 1]; RpGAN's R1 and R2 are taken at the real and the fake packs;
    --penalty_every=N takes it in one iteration of N, times N: lazy_penalty).
    labels int32 [B]: conditional models' real labels, which the fakes are asked to be too
    (so the penalty interpolates within one class). With --aux_classifier D's loss adds that
    weight times the cross-entropy of its label logits on the real images. Only D changes.
    Returns d_loss, and d_real, d_fake: D's mean output on each half."""
    g, d, config = state.generator, state.discriminator, state.config
    loss = registry.loss(config.loss)
    fake_images = models.call(g, noise, labels, training=True)
    batch = tf.shape(real_images)[0]
    both_labels = None if labels is None else pack_labels(tf.concat([labels, labels], axis=0),
                                                          config.pack)
    if loss.interpolates and alpha is None:  # a direct call: draw them here
        alpha = losses.interpolation_weights(state.rng, batch)
    with tf.GradientTape() as tape:
        # One pass over [real; fake] (2B images), as the original's train_on_batch did. With
        # --pack=k: [real packs; fake packs], 2B/k packs, each of k real or of k fake images.
        real_packs, fake_packs = pack(real_images, config.pack), pack(fake_images, config.pack)
        out, logits = judge(state, tf.concat([real_packs, fake_packs], axis=0), both_labels)
        packs = tf.shape(real_packs)[0]
        out_real, out_fake = out[:packs], out[packs:]
        d_loss = loss.discriminator(out_real, out_fake)
        if logits is not None:  # AC-GAN: D learns the labels of the real images only
            d_loss += config.aux_classifier * losses.classification(logits[:packs], labels)
        # The penalty sees what D sees: packs [B/k, 28, 28, k*C] and their labels [B/k, k]
        # (with k = 1 the images and labels themselves).
        pack_of_labels = None if labels is None else pack_labels(labels, config.pack)
        critic = lambda x: judge(state, x, pack_of_labels)[0]  # noqa: E731
        penalty = lazy_penalty(
            state, lambda: loss.penalty(critic, real_packs, fake_packs, alpha, config))
        if penalty is not None:
            d_loss += penalty
        target = gradient_target(d_loss, state.d_optimizer)
    state.d_optimizer.apply_gradients(
        zip(tape.gradient(target, d.trainable_variables), d.trainable_variables))
    return {"d_loss": d_loss, "d_real": tf.reduce_mean(out_real),
            "d_fake": tf.reduce_mean(out_fake)}


def judge(state, inputs, labels):
    """D (training mode) on its inputs and their labels (None for unconditional models):
    (the [P, 1] outputs the GAN loss reads, the label logits [P, K] or None without
    --aux_classifier)."""
    return models.split_auxiliary(
        models.call(state.discriminator, inputs, labels, training=True),
        state.config.aux_classifier)


def lazy_penalty(state, penalty):
    """penalty() (a scalar, or None: the loss has none) in every iteration, or with
    --penalty_every=N only in the iterations whose step is a multiple of N, times N (0
    in the others, where it costs nothing: tf.cond runs one branch)."""
    every = state.config.penalty_every
    if every == 1:
        return penalty()

    def taken():
        value = penalty()
        return tf.zeros([]) if value is None else every * value

    return tf.cond(state.step % every == 0, taken, lambda: tf.zeros([]))


def generator_step(state, noise, fake_labels=None, real_images=None, real_labels=None):
    """G update through the unchanged D on noise [B, Z] (and fake_labels [B] for conditional
    models): the non-saturating BCE loss (targets 1), -mean score for hinge and WGAN-GP, or
    RpGAN's, which pairs fake i with real i of real_images [B, 28, 28] (their labels
    real_labels [B]; read only by such a loss); with --diversity plus that weight times the
    mode-seeking term; with --aux_classifier plus that weight times the cross-entropy of D's
    label logits on the fakes against fake_labels. Only G changes."""
    g, config = state.generator, state.config
    loss = registry.loss(config.loss)
    packed_labels = lambda labels: (  # noqa: E731
        None if labels is None else pack_labels(labels, config.pack))
    with tf.GradientTape() as tape:
        fakes = models.call(g, noise, fake_labels, training=True)
        out_fake, logits = judge(state, pack(fakes, config.pack), packed_labels(fake_labels))
        out_real = None
        if loss.generator_reads_real:
            if real_images is None:
                raise ValueError(f"--loss={config.loss}: G's loss needs the real images")
            out_real = judge(state, pack(real_images, config.pack),
                             packed_labels(real_labels))[0]
        g_loss = loss.generator(out_fake, out_real)
        if logits is not None:  # AC-GAN: each fake read as the label asked of it
            g_loss += config.aux_classifier * losses.classification(logits, fake_labels)
        if config.diversity:
            g_loss += config.diversity * losses.mode_seeking(fakes, noise)
        target = gradient_target(g_loss, state.g_optimizer)
    state.g_optimizer.apply_gradients(
        zip(tape.gradient(target, g.trainable_variables), g.trainable_variables))
    return {"g_loss": g_loss}


def pack(images, k):
    """PacGAN's packs: images [k*P, 28, 28, C] (or [k*P, 28, 28], C = 1) -> [P, 28, 28, k*C],
    pack p holding images p*k .. p*k+k-1 one after another along the channels (image
    p*k + j in channels j*C .. j*C+C-1). k = 1 returns the images unchanged."""
    if k == 1:
        return images
    if images.shape.rank == 3:
        images = images[..., tf.newaxis]
    height, width, channels = images.shape[1:]
    grouped = tf.reshape(images, [-1, k, height, width, channels])  # [P, k, 28, 28, C]
    return tf.reshape(tf.transpose(grouped, [0, 2, 3, 1, 4]), [-1, height, width, k * channels])


def pack_labels(labels, k):
    """The labels of `pack`'s packs: int32 [k*P] -> [P, k] (k = 1: unchanged, [P])."""
    return labels if k == 1 else tf.reshape(labels, [-1, k])


def gradient_target(loss, optimizer):
    """What a step differentiates for `loss`, its mean over this replica's batch.

    Under a tf.distribute strategy with R replicas each holds 1/R of the global batch and
    Keras optimizers SUM the replicas' gradients, so each differentiates loss / R: the sum
    is the gradient of the global batch's mean, as on one device. A LossScaleOptimizer
    (mixed precision) also multiplies by its loss scale (and divides the gradients by it).
    On one device without mixed precision it is `loss` itself.
    """
    context = tf.distribute.get_replica_context()
    replicas = context.num_replicas_in_sync if context is not None else 1
    if replicas > 1:
        loss = loss / replicas
    return optimizer.scale_loss(loss)


def update_ema(ema, model, decay):
    """ema <- decay * ema + (1 - decay) * model for trainable weights; non-trainable ones
    (batch-norm statistics) are copied, so they match the live generator's."""
    for e, w in zip(ema.trainable_variables, model.trainable_variables):
        e.assign(decay * e + (1.0 - decay) * w)
    for e, w in zip(ema.non_trainable_variables, model.non_trainable_variables):
        e.assign(w)


def sampling_generator(state):
    """The generator whose images users see: the EMA copy when trained with --ema."""
    return state.ema_generator if state.ema_generator is not None else state.generator
