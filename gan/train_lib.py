"""Training: the state object, the GradientTape step, the compiled multi-step loop, and `train`.

Shapes: B = batch size, Z = noise size, images [B, 28, 28] in [0, 1], D outputs [B, 1].
"""

import os
import time

import keras
import numpy as np
import tensorflow as tf

from gan import checkpoints, data, eval_lib, images, interrupts, losses, models, monitor


class TrainState(tf.train.Checkpoint):
    """Everything a run needs, and exactly what its checkpoint holds.

    generator, discriminator: Keras models; g_optimizer, d_optimizer: their Adams (slots
    included); step: int64 count of finished iterations, which also fixes the position in
    the data stream; rng: the noise generator; fixed_noise [num_images, Z]: the noise of the
    saved image strips, so strips are comparable across epochs and resumes; architecture:
    JSON of the settings a resume must agree with.
    """

    def __init__(self, generator, discriminator, g_optimizer, d_optimizer, rng,
                 fixed_noise, architecture):
        super().__init__(
            generator=generator,
            discriminator=discriminator,
            g_optimizer=g_optimizer,
            d_optimizer=d_optimizer,
            step=tf.Variable(0, dtype=tf.int64, name="step"),
            rng=rng,
            fixed_noise=tf.Variable(fixed_noise, name="fixed_noise"),
            architecture=tf.Variable(architecture, dtype=tf.string, name="architecture"),
        )


def create_state(config):
    """Builds models, optimizers and RNG for `config`; seeded, so the same config gives
    bit-identical initial weights."""
    keras.utils.set_random_seed(config.seed)  # Keras initialisers use Keras's own seed
    generator = models.build_mlp_generator(config.noise_dim)
    discriminator = models.build_mlp_discriminator()
    optimizers = []
    for lr, net in ((config.g_learning_rate, generator), (config.d_learning_rate, discriminator)):
        opt = keras.optimizers.Adam(lr, beta_1=config.beta_1, beta_2=config.beta_2)
        opt.build(net.trainable_variables)  # slots exist before restore and before tracing
        optimizers.append(opt)
    rng = tf.random.Generator.from_seed(config.seed)
    fixed_noise = tf.random.Generator.from_seed(config.seed + 1).normal(
        [config.num_images, config.noise_dim])
    return TrainState(generator, discriminator, optimizers[0], optimizers[1], rng,
                      fixed_noise, config.architecture())


def discriminator_step(state, real_images, noise):
    """D update on real images [B, 28, 28] (label 1) and G(noise [B, Z]) (label 0).
    Only the discriminator's variables change."""
    g, d = state.generator, state.discriminator
    fake_images = g(noise, training=True)
    batch = tf.shape(real_images)[0]
    with tf.GradientTape() as tape:
        # One pass over [real; fake] (2B images), as the original's train_on_batch did.
        p = d(tf.concat([real_images, fake_images], axis=0), training=True)
        p_real, p_fake = p[:batch], p[batch:]
        d_loss = losses.discriminator_bce(p_real, p_fake)
    state.d_optimizer.apply_gradients(
        zip(tape.gradient(d_loss, d.trainable_variables), d.trainable_variables))
    return {"d_loss": d_loss, "d_real": tf.reduce_mean(p_real), "d_fake": tf.reduce_mean(p_fake)}


def generator_step(state, noise):
    """G update through the (unchanged) discriminator on noise [B, Z], labels 1: the
    non-saturating loss. Only the generator's variables change."""
    g, d = state.generator, state.discriminator
    with tf.GradientTape() as tape:
        g_loss = losses.generator_bce(d(g(noise, training=True), training=True))
    state.g_optimizer.apply_gradients(
        zip(tape.gradient(g_loss, g.trainable_variables), g.trainable_variables))
    return {"g_loss": g_loss}


def train_step(state, real_images):
    """One iteration of the original on real_images [B, 28, 28]: a D update on fresh noise,
    a G update on new noise, step += 1. Returns scalar metrics d_loss, g_loss, and d_real,
    d_fake (D's mean output on the real and fake halves).

    Noise comes from state.rng. XLA and plain TensorFlow turn the same generator state into
    different numbers, so a run with --xla and one with --noxla differ in their random
    draws (each is deterministic); given the same noise, the arithmetic is the same.
    """
    batch = tf.shape(real_images)[0]
    noise_shape = [batch, state.generator.inputs[0].shape[-1]]
    metrics = discriminator_step(state, real_images, state.rng.normal(noise_shape))
    metrics.update(generator_step(state, state.rng.normal(noise_shape)))
    state.step.assign_add(1)
    return metrics


METRICS = ("d_loss", "g_loss", "d_real", "d_fake")


def make_multi_step(state, jit_compile=True):
    """A compiled function running `count` iterations on batches[start:start+count].

    batches: float32 [K, B, 28, 28]; start, count: int32 scalars (tensors, so any
    split of a K-batch element reuses one trace). Stops early at the first non-finite
    loss. Returns the metrics averaged over the steps run, "steps" (how many ran) and
    "finite" (False if it stopped on a NaN/Inf).
    """

    @tf.function(jit_compile=jit_compile)
    def multi_step(batches, start, count):
        # An explicit while loop: `tf.range(count)` would make XLA treat count as a
        # compile-time constant and recompile for every chunk length.
        totals = {k: tf.constant(0.0) for k in METRICS}
        done = tf.constant(0)
        finite = tf.constant(True)
        while done < count and finite:
            metrics = train_step(state, batches[start + done])
            finite = tf.math.is_finite(metrics["d_loss"]) & tf.math.is_finite(metrics["g_loss"])
            totals = {k: totals[k] + metrics[k] for k in METRICS}
            done += 1
        n = tf.cast(tf.maximum(done, 1), tf.float32)
        out = {k: v / n for k, v in totals.items()}
        out.update(steps=done, finite=finite)
        return out

    return multi_step


def make_generate(state):
    """Compiled generator call: noise [N, Z] -> images [N, 28, 28]."""
    return tf.function(lambda z: state.generator(z, training=False))


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

    Raises NonFiniteLossError on a NaN/Inf loss or weight (nothing bad is saved), and
    interrupts.Interrupted after SIGINT/SIGTERM, once a checkpoint of the current step is
    written and the pending images are flushed.
    """
    config.validate()
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    state = create_state(config)
    manager = checkpoints.make_manager(state, config.checkpoint_dir, config.keep_checkpoints,
                                       log=log)
    start = checkpoints.restore_latest(state, manager, config.architecture(), log=log)
    apply_learning_rates(state, config, log=log)
    if start >= config.epochs:
        log(f"Already trained {start} of {config.epochs} epochs; nothing to do.")
        return state
    log(f"{'Resuming from' if start else 'Starting at'} step {start}; "
        f"training to {config.epochs} epochs (one batch of {config.batch_size} each).")
    # After the checkpoint checks: a refused resume or a finished run needs no data.
    train_images, train_labels = data.load_split(config.dataset, "train", config.data_dir)

    k = config.steps_per_call
    stream = iter(data.make_batches(train_images, train_labels, config.batch_size,
                                    config.seed, start, k))
    multi_step = make_multi_step(state, config.xla)
    generate = make_generate(state)
    renderer = images.StripRenderer(config.num_images)
    step, t0 = start, time.time()
    saved_step = start
    # On exit (also by an exception) the writer finishes its images before handlers go.
    with interrupts.stop_requested() as interrupt, \
            monitor.RunMonitor(config, start, log) as run_monitor, \
            images.BackgroundWriter() as writer:
        while step < config.epochs:
            batches, _ = next(stream)
            offset = 0
            while offset < k and step < config.epochs:
                if interrupt:
                    raise stop_on_signal(interrupt, state, manager, saved_step)
                stop = min(step + k - offset, config.epochs,
                           next_boundary(step, config.save_every, offset=1),
                           next_boundary(step, config.checkpoint_every),
                           next_boundary(step, config.eval_every or config.epochs))
                metrics = multi_step(batches, tf.constant(offset), tf.constant(stop - step))
                if not bool(metrics["finite"]):
                    bad = step + int(metrics["steps"]) - 1
                    raise NonFiniteLossError(
                        f"non-finite loss at epoch {bad} (d_loss={float(metrics['d_loss']):.4g}, "
                        f"g_loss={float(metrics['g_loss']):.4g}); stopped without saving it. "
                        f"The last good checkpoint is kept in {config.checkpoint_dir}.")
                offset += stop - step
                step = stop
                run_monitor.on_chunk(step, {k_: float(metrics[k_]) for k_ in METRICS})
                if (step - 1) % config.save_every == 0:
                    strip = generate(state.fixed_noise).numpy()
                    writer.submit(renderer.save, strip,
                                  images.image_path(config.image_dir, step - 1))
                    run_monitor.on_strip(step - 1, strip)
                if step % config.checkpoint_every == 0 or step == config.epochs:
                    save_checkpoint(state, manager)
                    saved_step = step
                if config.eval_every and step % config.eval_every == 0:
                    scalars, line = eval_lib.training_eval(
                        state.generator, step, config.eval_samples, config.data_dir)
                    log(line)
                    run_monitor.write_scalars(step, scalars)
    gif, plot = run_monitor.finish()
    log(f"Done: {step - start} iterations in {time.time() - t0:.1f}s; "
        f"images in {config.image_dir}, checkpoints in {config.checkpoint_dir}.")
    log(f"Logs in {config.resolved_logs_dir()} (tensorboard --logdir "
        f"{config.resolved_logs_dir()}): loss plot {plot}"
        + (f", progress GIF {gif}" if gif else "") + ".")
    return state
