"""Training: the state object, the GradientTape step, the compiled multi-step loop, and `train`.

Shapes: B = batch size, Z = noise size, images [B, 28, 28] in [0, 1], D outputs [B, 1].
"""

import concurrent.futures
import contextlib
import dataclasses
import os
import time

import keras
import numpy as np
import tensorflow as tf

from gan import (checkpoints, compilation, data, distribute, eval_lib, images, interrupts, losses,
                 models, monitor)


class TrainState(tf.train.Checkpoint):
    """Everything a run needs, and exactly what its checkpoint holds.

    generator, discriminator: Keras models; g_optimizer, d_optimizer: their Adams (slots
    included); step: int64 count of finished iterations, which also fixes the position in
    the data stream; rng: the noise generator; fixed_noise [num_images, Z]: the noise of the
    saved image strips, so strips are comparable across epochs and resumes; architecture:
    JSON of the settings a resume must agree with; ema_generator (only with --ema): the
    moving average of the generator's weights, the one images and evaluation use;
    cluster_prior (only with --clusters=K): float [K], each k-means cluster's share of the
    training images, which sampling draws cluster ids from.

    `options` (a StepOptions, not saved: it follows from the config) tells the step which
    loss, how many D updates per G update and which EMA decay to use.
    """

    def __init__(self, generator, discriminator, g_optimizer, d_optimizer, rng,
                 fixed_noise, architecture, ema_generator=None, options=None, clusters=0):
        extra = {"ema_generator": ema_generator} if ema_generator is not None else {}
        if clusters:
            extra["cluster_prior"] = tf.Variable(tf.zeros([clusters]), name="cluster_prior")
        super().__init__(
            generator=generator,
            discriminator=discriminator,
            g_optimizer=g_optimizer,
            d_optimizer=d_optimizer,
            step=tf.Variable(0, dtype=tf.int64, name="step"),
            rng=rng,
            fixed_noise=tf.Variable(fixed_noise, name="fixed_noise"),
            architecture=tf.Variable(architecture, dtype=tf.string, name="architecture"),
            **extra,
        )
        self.ema_generator = ema_generator
        self.options = options or StepOptions()


@dataclasses.dataclass(frozen=True)
class StepOptions:
    """How the training step trains (fixed per run; defaults are the original's)."""

    loss: str = "bce"  # see gan.losses.LOSSES
    gp_weight: float = 10.0
    d_steps: int = 1
    ema_decay: float = 0.999

    @classmethod
    def from_config(cls, config):
        return cls(config.loss, config.gp_weight, config.d_steps, config.ema_decay)


def create_state(config, strategy=None):
    """Builds models, optimizers and RNG for `config`; seeded, so the same config gives
    bit-identical initial weights. With a tf.distribute `strategy`, the networks and
    optimizers are made in its scope (mirrored over its replicas); the step counter, RNG and
    the rest are plain variables of this process, used in cross-replica context (each
    worker of a multi-worker run holds equal copies). With config.mixed_precision the
    models compute in float16 (variables and outputs stay float32) and each Adam is wrapped
    in a keras.optimizers.LossScaleOptimizer (dynamic loss scaling)."""
    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    with scope, _dtype_policy("mixed_float16" if config.mixed_precision else None):
        generator, discriminator, optimizers, ema_generator = _build_networks(config)
    rng = tf.random.Generator.from_seed(config.seed)
    fixed_noise = tf.random.Generator.from_seed(config.seed + 1).normal(
        [config.num_images, config.noise_dim])
    return TrainState(generator, discriminator, optimizers[0], optimizers[1], rng,
                      fixed_noise, config.architecture(), ema_generator,
                      StepOptions.from_config(config), config.clusters)


@contextlib.contextmanager
def _dtype_policy(name):
    """Keras's global dtype policy set to `name` (None: left as it is) while models are
    built; restored afterwards, so later models in the process are unaffected."""
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
    generator = models.make_generator(config.model, config.noise_dim, config.conditional,
                                      config.num_classes)
    discriminator = models.make_discriminator(
        config.model, config.conditional, probability_output=config.loss == "bce",
        spectral_norm=config.spectral_norm, minibatch_std=config.minibatch_std,
        num_classes=config.num_classes)
    optimizers = []
    for lr, net in ((config.g_learning_rate, generator), (config.d_learning_rate, discriminator)):
        opt = keras.optimizers.Adam(lr, beta_1=config.beta_1, beta_2=config.beta_2)
        if config.mixed_precision:
            opt = keras.optimizers.LossScaleOptimizer(opt)
        opt.build(net.trainable_variables)  # slots exist before restore and before tracing
        optimizers.append(opt)
    ema_generator = None
    if config.ema:  # built after the rest, so the default run's initial weights are unchanged
        ema_generator = models.make_generator(config.model, config.noise_dim, config.conditional,
                                              config.num_classes)
        ema_generator.set_weights(generator.get_weights())
    return generator, discriminator, optimizers, ema_generator


def discriminator_step(state, real_images, noise, labels=None, alpha=None):
    """D update on real images [B, 28, 28] (label 1) and G(noise [B, Z]) (label 0), with the
    loss of state.options (plus the gradient penalty for wgan-gp). Conditional models also
    take labels, int32 [B]: the real images' digits, which the fakes are also asked to be
    (so the gradient penalty interpolates between images of one class). Only the
    discriminator's variables change. Returns d_loss and d_real, d_fake: D's mean output
    (probability or score) on each half. alpha [B, 1, 1]: WGAN-GP's interpolation weights,
    drawn from state.rng when not given."""
    g, d, opts = state.generator, state.discriminator, state.options
    fake_images = models.call(g, noise, labels, training=True)
    batch = tf.shape(real_images)[0]
    both_labels = None if labels is None else tf.concat([labels, labels], axis=0)
    if opts.loss != "wgan-gp":
        alpha = None
    elif alpha is None:
        alpha = losses.interpolation_weights(state.rng, batch)
    with tf.GradientTape() as tape:
        # One pass over [real; fake] (2B images), as the original's train_on_batch did.
        out = models.call(d, tf.concat([real_images, fake_images], axis=0), both_labels,
                          training=True)
        out_real, out_fake = out[:batch], out[batch:]
        d_loss = losses.discriminator_loss(opts.loss, out_real, out_fake)
        if alpha is not None:
            critic = lambda x: models.call(d, x, labels, training=True)  # noqa: E731
            d_loss += opts.gp_weight * losses.gradient_penalty(
                critic, real_images, fake_images, alpha)
        target = gradient_target(d_loss, state.d_optimizer)
    state.d_optimizer.apply_gradients(
        zip(tape.gradient(target, d.trainable_variables), d.trainable_variables))
    return {"d_loss": d_loss, "d_real": tf.reduce_mean(out_real),
            "d_fake": tf.reduce_mean(out_fake)}


def generator_step(state, noise, fake_labels=None):
    """G update through the (unchanged) discriminator on noise [B, Z] (and fake_labels [B] for
    conditional models): the non-saturating BCE loss (labels 1), or -mean score for hinge and
    WGAN-GP. Only the generator's variables change (and the EMA copy, if any, follows)."""
    g, d = state.generator, state.discriminator
    with tf.GradientTape() as tape:
        fakes = models.call(g, noise, fake_labels, training=True)
        g_loss = losses.generator_loss(state.options.loss,
                                       models.call(d, fakes, fake_labels, training=True))
        target = gradient_target(g_loss, state.g_optimizer)
    state.g_optimizer.apply_gradients(
        zip(tape.gradient(target, g.trainable_variables), g.trainable_variables))
    if state.ema_generator is not None:
        update_ema(state.ema_generator, g, state.options.ema_decay)
    return {"g_loss": g_loss}


def gradient_target(loss, optimizer):
    """What a step differentiates for `loss`, its mean over this replica's batch.

    Under a tf.distribute strategy with R replicas, each holds 1/R of the global batch and
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


def _noise(state, batch):
    """Noise [B, Z] from state.rng."""
    return state.rng.normal([batch, state.generator.inputs[0].shape[-1]])


def draw_step_noise(state, batch):
    """The random numbers of one iteration on a batch of `batch`, drawn from state.rng in
    train_step's order: per D update its noise [B, Z] ("d_noise", a list) and for WGAN-GP
    its interpolation weights [B, 1, 1] ("alpha", a list, else empty); then G's noise
    ("g_noise") and, for conditional models, the digits asked of G, int32 [B] uniform
    ("fake_labels", only then)."""
    draws = {"d_noise": [], "alpha": []}
    for _ in range(state.options.d_steps):
        draws["d_noise"].append(_noise(state, batch))
        if state.options.loss == "wgan-gp":
            draws["alpha"].append(losses.interpolation_weights(state.rng, batch))
    draws["g_noise"] = _noise(state, batch)
    if models.takes_labels(state.generator):
        draws["fake_labels"] = state.rng.uniform([batch], 0, models.num_classes(state.generator),
                                                 dtype=tf.int32)
    return draws


def apply_step(state, real_images, real_labels, draws):
    """train_step's updates given its random numbers `draws` (draw_step_noise), without
    counting the step. Returns train_step's metrics."""
    d_steps = state.options.d_steps
    batch = tf.shape(real_images)[0] // d_steps
    conditional = models.takes_labels(state.generator)
    for i in range(d_steps):
        part = slice(i * batch, (i + 1) * batch)
        metrics = discriminator_step(state, real_images[part], draws["d_noise"][i],
                                     real_labels[part] if conditional else None,
                                     draws["alpha"][i] if draws["alpha"] else None)
    metrics.update(generator_step(state, draws["g_noise"], draws.get("fake_labels")))
    return metrics


def train_step(state, real_images, real_labels=None):
    """One iteration: state.options.d_steps D updates, each on fresh noise and its own B of the
    real_images [d_steps * B, 28, 28] (real_labels [d_steps * B] for conditional models), then
    a G update on new noise (and uniformly drawn digits); step += 1. With the defaults this
    is the original's iteration. Returns scalar metrics d_loss, g_loss, d_real, d_fake (D's mean output on the real and
    fake halves; of the last D update).

    Noise comes from state.rng. XLA and plain TensorFlow turn the same generator state into
    different numbers, so a run with --xla and one with --noxla differ in their random
    draws (each is deterministic); given the same noise, the arithmetic is the same.
    """
    batch = tf.shape(real_images)[0] // state.options.d_steps
    metrics = apply_step(state, real_images, real_labels, draw_step_noise(state, batch))
    state.step.assign_add(1)
    return metrics


def replica_part(x, groups=1):
    """This replica's share of x [groups * B, ...] (B the global batch, R replicas): rows
    r*B/R to (r+1)*B/R of each of the `groups` consecutive B-row blocks, for replica r. The
    replicas' shares together are x. Call in replica context (inside strategy.run)."""
    context = tf.distribute.get_replica_context()
    blocks = tf.reshape(x, [groups, context.num_replicas_in_sync, -1, *x.shape[1:]])
    return tf.reshape(blocks[:, context.replica_id_in_sync_group], [-1, *x.shape[1:]])


def distributed_train_step(strategy, state, real_images, real_labels=None):
    """train_step under the tf.distribute `strategy`, computing what train_step computes on
    one device for the global batch real_images [d_steps * B, 28, 28]: the iteration's
    random numbers are drawn once for the global batch (cross-replica context, same order),
    each replica trains on its share of them and of the real batch (replica_part), and the
    optimizers sum the replicas' gradients (see gradient_target). step += 1. Returns the
    metrics averaged over the replicas (those of the global batch)."""
    d_steps = state.options.d_steps
    draws = draw_step_noise(state, tf.shape(real_images)[0] // d_steps)

    def on_replica(real, labels, draws):
        share = lambda x: replica_part(x, d_steps)  # noqa: E731 (real batches: d_steps blocks)
        return apply_step(state, share(real), None if labels is None else share(labels),
                          tf.nest.map_structure(replica_part, draws))

    per_replica = strategy.run(on_replica, args=(real_images, real_labels, draws))
    state.step.assign_add(1)
    return {name: strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None)
            for name, value in per_replica.items()}


METRICS = ("d_loss", "g_loss", "d_real", "d_fake")


def make_multi_step(state, jit_compile=True, strategy=None):
    """A compiled function running `count` iterations on batches[start:start+count].

    batches: float32 [K, B, 28, 28] (B = d_steps x batch size); labels: int32 [K, B], needed
    by conditional models (optional otherwise); start, count: int32 scalars (tensors, so any
    split of a K-batch element reuses one trace). Stops early at the first non-finite
    loss. Returns the metrics averaged over the steps run, "steps" (how many ran) and
    "finite" (False if it stopped on a NaN/Inf). With a tf.distribute `strategy` (None:
    TensorFlow's default, one device) each iteration is a distributed_train_step, and
    jit_compile is ignored: XLA cannot compile the replicas' all-reduce into the loop.
    """
    step = train_step
    if strategy is not None:
        step = lambda *args: distributed_train_step(strategy, *args)  # noqa: E731
        jit_compile = False

    # autograph=False: the loop is an explicit tf.while_loop and everything else is plain
    # Python around TF ops, so there is nothing to convert (converting cost ~1 s at start-up).
    @tf.function(jit_compile=jit_compile, autograph=False)
    def multi_step(batches, start, count, labels=None):
        def body(done, finite, totals):
            metrics = step(state, tf.gather(batches, start + done),
                           None if labels is None else tf.gather(labels, start + done))
            finite = tf.math.is_finite(metrics["d_loss"]) & tf.math.is_finite(metrics["g_loss"])
            return done + 1, finite, [t + metrics[k] for t, k in zip(totals, METRICS)]

        # `count` is a loop-condition tensor, not a trip count, so XLA does not treat it as a
        # compile-time constant and recompile for every chunk length.
        done, finite, totals = tf.while_loop(
            lambda done, finite, totals: (done < count) & finite, body,
            (tf.constant(0), tf.constant(True), [tf.constant(0.0)] * len(METRICS)))
        n = tf.cast(tf.maximum(done, 1), tf.float32)
        out = {k: t / n for k, t in zip(METRICS, totals)}
        out.update(steps=done, finite=finite)
        return out

    return multi_step


def sampling_generator(state):
    """The generator whose images users see: the EMA copy when trained with --ema."""
    return state.ema_generator if state.ema_generator is not None else state.generator


def generate(generator, noise, labels=None):
    """Images [N, 28, 28] in [0, 1] from noise [N, Z], in inference mode.

    generator: a Keras generator or a TrainState (then its sampling_generator, i.e. the EMA
    weights if kept). labels: int [N] digits to draw, required by conditional generators and
    ignored by unconditional ones.
    """
    if isinstance(generator, TrainState):
        generator = sampling_generator(generator)
    if labels is not None:
        labels = tf.cast(labels, tf.int32)
    return models.call(generator, noise, labels, training=False)


def strip_labels(num_images, num_classes=models.NUM_CLASSES):
    """Labels [num_images] of the image strips of a conditional run: 0, 1, ..., 9, 0, ...
    (clusters 0, 1, ... of a --clusters run)."""
    return tf.range(num_images, dtype=tf.int32) % num_classes


def make_generate(state):
    """Compiled generator call (sampling generator): noise [N, Z] -> images [N, 28, 28];
    a conditional one draws digits 0, 1, 2, ... in order (`strip_labels`)."""
    classes = models.num_classes(state.generator) or models.NUM_CLASSES
    return tf.function(lambda z: generate(state, z, strip_labels(tf.shape(z)[0], classes)),
                       autograph=False)  # plain calls, nothing to convert


def warm_up(multi_step, config):
    """Traces and compiles `multi_step` (make_multi_step) for config's shapes without
    changing the state: the loop runs 0 iterations on zero batches of the training stream's
    shapes and dtypes."""
    k, batch = config.steps_per_call, config.batch_size * config.d_steps
    multi_step(tf.zeros([k, batch, *models.IMAGE_SHAPE]), tf.constant(0), tf.constant(0),
               tf.zeros([k, batch], tf.int32))


def compile_loop(state, config, strategy=None, log=print):
    """make_multi_step for `config`, traced and compiled by warm_up.

    With XLA's persistent compilation cache on (gan.compilation), a failed compilation means
    a cache entry could not be read, e.g. one cut short by a full disk or a crash: this
    machine's entries are removed and the loop compiled afresh, once; if that fails too,
    raises compilation.CacheError. Nothing of the state changes either way.
    """
    multi_step = make_multi_step(state, config.xla, strategy)
    cache = compilation.active_cache()
    try:
        warm_up(multi_step, config)
        return multi_step
    except tf.errors.OpError as error:
        if cache is None or not config.xla or strategy is not None:
            raise
        removed = compilation.clear_cache()
        log(f"XLA's compilation cache failed ({error.message.splitlines()[0]}); removed "
            f"{removed} cached program(s) from {cache}; compiling afresh.")
    multi_step = make_multi_step(state, config.xla, strategy)  # a new function: a new key
    try:
        warm_up(multi_step, config)
    except tf.errors.OpError as error:
        raise compilation.CacheError(
            f"compiling the training loop failed with XLA's compilation cache in {cache}, also "
            f"after clearing it: {error.message.splitlines()[0]}. If that folder is full or "
            "read-only, free or repair it, or run with --xla_cache_dir= (no cache).") from error
    return multi_step


def next_boundary(step, every, offset=0):
    """The smallest step counter > step with (counter - offset) % every == 0."""
    return step + every - ((step - offset) % every)


class NonFiniteLossError(RuntimeError):
    """A loss (or a weight) became NaN or Inf; no checkpoint of the bad weights was written."""


def state_is_finite(state):
    """True if every float variable of both networks and both optimizers (slots) is finite."""
    variables = (state.generator.variables + state.discriminator.variables
                 + state.g_optimizer.variables + state.d_optimizer.variables)
    for variable in variables:
        value = np.asarray(variable.numpy())
        if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
            return False
    return True


def save_checkpoint(state, manager):
    """Saves `state` as ckpt-<step>. A loss can stay finite for the step whose update made a
    weight NaN, so the weights themselves are checked first: if any is NaN or Inf, raises
    NonFiniteLossError and writes nothing."""
    step = int(state.step.numpy())
    if not state_is_finite(state):
        raise NonFiniteLossError(
            f"a weight or optimizer value became NaN or Inf by epoch {step - 1}; stopped "
            f"without saving it. The last good checkpoint is kept in {manager.directory}.")
    return manager.save(checkpoint_number=step)


def stop_on_signal(request, state, manager, saved_step):
    """After a stop signal: saves a checkpoint at the current step (unless `saved_step`, the
    last one saved, is it already) and returns the interrupts.Interrupted to raise, whose
    message says where the run stopped."""
    step = int(state.step.numpy())
    if step != saved_step:
        save_checkpoint(state, manager)
    where = (f"checkpoint {os.path.join(manager.directory, f'ckpt-{step}')} holds it"
             if step else "nothing trained yet, nothing saved")
    message = (f"stopped by {request.name} at epoch {step} ({where}); run the same command "
               f"to resume. Exit code {interrupts.exit_code(request.signum)}.")
    return interrupts.Interrupted(request.signum, step, message)


def apply_learning_rates(state, config, log=print):
    """Sets both optimizers' learning rates to config's. A checkpoint holds the rates it was
    saved with, and restoring it would otherwise silently override --g_learning_rate and
    --d_learning_rate on a resumed run; a change is logged."""
    for name, optimizer in (("g_learning_rate", state.g_optimizer),
                            ("d_learning_rate", state.d_optimizer)):
        wanted, current = getattr(config, name), float(optimizer.learning_rate.numpy())
        if current != float(np.float32(wanted)):
            log(f"--{name}={wanted:g} replaces the checkpoint's {current:g}.")
            optimizer.learning_rate = wanted


def train(config, log=print):
    """Trains to config.epochs iterations, resuming from config.checkpoint_dir.

    The image for epoch e (0-based, e % save_every == 0) is written after iteration e,
    i.e. when the step counter reaches e + 1, as in the original loop. Returns the state.

    Raises NonFiniteLossError on a NaN/Inf loss or weight (nothing bad is saved),
    compilation.CacheError if XLA's compilation cache cannot be used (before any training),
    and interrupts.Interrupted after SIGINT/SIGTERM, once a checkpoint of the current step
    is written and the pending images are flushed.

    With config.xla, compiled loops are kept in XLA's persistent compilation cache
    (config.resolved_xla_cache_dir(); gan.compilation), so a rerun skips the compilation.

    Under config.strategy (gan.distribute) config.batch_size is the global batch; a worker
    that is not the chief restores from config.checkpoint_dir like the chief but writes its
    images, logs and checkpoints into a temporary folder that is deleted at the end.
    """
    config.validate()
    compilation.configure(config, log=log)  # no-op if the entry point did it
    if config.cpu_devices:
        distribute.configure_cpu_devices(config.cpu_devices)
    strategy = distribute.make_strategy(config.strategy)
    distribute.check_global_batch(config, distribute.num_replicas(strategy))
    with distribute.writing_folders(config, distribute.is_chief(strategy)) as (config, save_to):
        return _train(config, strategy, save_to, log)


def training_elements(images, labels, config, start):
    """The training stream (data.make_batches) from step `start` as elements (batches
    [K, B', 28, 28], labels [K, B'], first, end): batches[i] is the real batch of step
    first + i (B' = d_steps x batch size, one batch per D update), and the element serves
    steps max(start, first)..end-1.

    Elements begin where a strip is due (step counter 1 + n x save_every) when that is
    fewer than K steps after `start`: a run from step 0 gets a first element of one step,
    then elements 1..K, K+1..2K, ..., so the strip at the start of each does not split it
    into two loop calls. The data of each step is the same whatever the elements' bounds.
    """
    k, batch = config.steps_per_call, config.batch_size * config.d_steps
    images, labels = tf.constant(images), tf.constant(labels)  # one copy for both streams

    def make(first):
        return data.make_batches(images, labels, batch, config.seed, first, k)

    aligned = start
    if (start - 1) % config.save_every:
        aligned = next_boundary(start, config.save_every, offset=1)
        if aligned - start >= k:
            aligned = start
    if aligned > start:
        batches, batch_labels = next(iter(make(start)))
        yield batches, batch_labels, start, aligned
    for i, (batches, batch_labels) in enumerate(make(aligned)):
        yield batches, batch_labels, aligned + i * k, aligned + (i + 1) * k


def _train(config, strategy, save_to, log):
    """train() in this process's writing folders (distribute.writing_folders): checkpoints
    are restored from config.checkpoint_dir and saved into `save_to`."""
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    state = create_state(config, strategy)
    restore_from = checkpoints.make_manager(state, config.checkpoint_dir,
                                            config.keep_checkpoints, log=log)
    manager = (restore_from if save_to == config.checkpoint_dir  # saves go here
               else checkpoints.make_manager(state, save_to, 1, log=log))
    start = checkpoints.restore_latest(state, restore_from, config.architecture(),
                                       log=log)
    distribute.check_same_start(strategy, start)
    apply_learning_rates(state, config, log=log)
    if start >= config.epochs:
        log(f"Already trained {start} of {config.epochs} epochs; nothing to do.")
        return state
    log(f"{'Resuming from' if start else 'Starting at'} step {start}; "
        f"training to {config.epochs} epochs (one batch of {config.batch_size} each).")
    if config.xla and strategy is not None:
        log(f"Note: --xla is not used with --strategy={config.strategy} (XLA cannot compile "
            "the replicas' all-reduce into the loop); the loop runs as a plain tf.function.")
    generate = make_generate(state)
    saved_step = start
    # The writer thread does the per-chunk logging and image files while the loop runs on;
    # on exit (also by an exception) it finishes its jobs before the handlers go.
    with interrupts.stop_requested() as interrupt, \
            monitor.RunMonitor(config, start, log) as run_monitor, \
            images.BackgroundWriter() as writer:
        # While XLA compiles the loop (~1.5-2.5 s, ~0.7 s from its cache) this thread only
        # does what builds no TensorFlow function: the function names that tf.data, the
        # strip function and the summaries would take meanwhile shift the numbers in the
        # loop's own, part of the key of XLA's compilation cache, and the cache would miss.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            compiled = pool.submit(compile_loop, state, config, strategy, log)
            renderer = images.StripRenderer(config.num_images)
            multi_step = compiled.result()
        # After the checkpoint checks: a refused resume or a finished run needs no data.
        train_images, train_labels = data.load_split(config.dataset, "train", config.data_dir)
        if config.clusters:  # the digits are never used: clusters replace them
            train_labels = data.cluster_labels(train_images, config.clusters, config.seed)
            state.cluster_prior.assign(
                np.bincount(train_labels, minlength=config.clusters) / len(train_labels))
        elements = training_elements(train_images, train_labels, config, start)
        generate(state.fixed_noise)
        run_monitor.prepare(METRICS, config.num_images)
        step, t0 = start, time.time()
        while step < config.epochs:
            batches, labels, first, end = next(elements)
            while step < min(end, config.epochs):
                if interrupt:
                    raise stop_on_signal(interrupt, state, manager, saved_step)
                stop = min(end, config.epochs,
                           next_boundary(step, config.save_every, offset=1),
                           next_boundary(step, config.checkpoint_every),
                           next_boundary(step, config.eval_every or config.epochs))
                metrics = multi_step(batches, tf.constant(step - first),
                                     tf.constant(stop - step), labels)
                if not bool(metrics["finite"]):
                    bad = step + int(metrics["steps"]) - 1
                    raise NonFiniteLossError(
                        f"non-finite loss at epoch {bad} (d_loss={float(metrics['d_loss']):.4g}, "
                        f"g_loss={float(metrics['g_loss']):.4g}); stopped without saving it. "
                        f"The last good checkpoint is kept in {config.checkpoint_dir}.")
                step = stop
                now = time.time()
                # The strip before the writer thread wakes up for the chunk's logs: on 2
                # cores its generator call then has the other core to itself.
                strip = (generate(state.fixed_noise).numpy()
                         if (step - 1) % config.save_every == 0 else None)
                writer.submit(run_monitor.on_chunk, step,
                              {k_: float(metrics[k_]) for k_ in METRICS}, now)
                if strip is not None:
                    writer.submit(renderer.save, strip,
                                  images.image_path(config.image_dir, step - 1))
                    writer.submit(run_monitor.on_strip, step - 1, strip)
                if step % config.checkpoint_every == 0 or step == config.epochs:
                    save_checkpoint(state, manager)
                    saved_step = step
                if config.eval_every and step % config.eval_every == 0:
                    scalars, line = eval_lib.training_eval(
                        sampling_generator(state), step, config.eval_samples, config.data_dir)
                    log(line)
                    writer.submit(run_monitor.write_scalars, step, scalars)
    gif, plot = run_monitor.finish()
    log(f"Done: {step - start} iterations in {time.time() - t0:.1f}s; "
        f"images in {config.image_dir}, checkpoints in {config.checkpoint_dir}.")
    log(f"Logs in {config.resolved_logs_dir()} (tensorboard --logdir "
        f"{config.resolved_logs_dir()}): loss plot {plot}"
        + (f", progress GIF {gif}" if gif else "") + ".")
    return state
