"""What wraps the step from outside: the compiled K-step loop (XLA) and tf.distribute.

Shapes: K = steps per call, B' = d_steps x batch size; batches [K, B', 28, 28] (or
[K, B', 28, 28, C] for C channels),
labels int32 [K, B'].
"""

import tensorflow as tf

from gan.models import networks as models
from gan.training import compilation, step as step_lib

METRICS = ("d_loss", "g_loss", "d_real", "d_fake")


def replica_part(x, groups=1):
    """This replica's share of x [groups * B, ...] (B the global batch, R replicas): rows
    r*B/R to (r+1)*B/R of each of the `groups` consecutive B-row blocks, for replica r. The
    replicas' shares together are x. Call in replica context (inside strategy.run)."""
    context = tf.distribute.get_replica_context()
    blocks = tf.reshape(x, [groups, context.num_replicas_in_sync, -1, *x.shape[1:]])
    return tf.reshape(blocks[:, context.replica_id_in_sync_group], [-1, *x.shape[1:]])


def distributed_train_step(strategy, state, real_images, real_labels=None):
    """step.train_step under the tf.distribute `strategy`, computing what train_step computes
    on one device for the global batch real_images [d_steps * B, 28, 28]: the iteration's
    random numbers are drawn once for the global batch (cross-replica context, same order),
    each replica trains on its share of them and of the real batch (replica_part), and the
    optimizers sum the replicas' gradients (step.gradient_target). step += 1. Returns the
    metrics averaged over the replicas (those of the global batch)."""
    d_steps = state.config.d_steps
    draws = step_lib.draw_step_noise(state, tf.shape(real_images)[0] // d_steps)

    def on_replica(real, labels, draws):
        share = lambda x: replica_part(x, d_steps)  # noqa: E731 (real batches: d_steps blocks)
        return step_lib.apply_step(state, share(real), None if labels is None else share(labels),
                                   tf.nest.map_structure(replica_part, draws))

    per_replica = strategy.run(on_replica, args=(real_images, real_labels, draws))
    state.step.assign_add(1)
    return {name: strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None)
            for name, value in per_replica.items()}


def make_multi_step(state, jit_compile=True, strategy=None):
    """A compiled function running `count` iterations on batches[start:start+count].

    batches [K, B', 28, 28]; labels [K, B'] (needed by conditional models); start, count:
    int32 scalars (tensors, so any split of a K-batch element reuses one trace). Stops early
    at the first non-finite loss. Returns the metrics averaged over the steps run, "steps"
    (how many ran) and "finite" (False if it stopped on a NaN/Inf). With a tf.distribute
    `strategy` each iteration is a distributed_train_step, and jit_compile is ignored: XLA
    cannot compile the replicas' all-reduce into the loop.
    """
    step = step_lib.train_step
    if strategy is not None:
        step = lambda *args: distributed_train_step(strategy, *args)  # noqa: E731
        jit_compile = False

    # autograph=False: the loop is an explicit tf.while_loop and the rest is plain Python
    # around TF ops, so there is nothing to convert (and converting costs start-up time).
    @tf.function(jit_compile=jit_compile, autograph=False)
    def multi_step(batches, start, count, labels=None):
        def body(done, finite, totals):
            metrics = step(state, tf.gather(batches, start + done),
                           None if labels is None else tf.gather(labels, start + done))
            finite = tf.math.is_finite(metrics["d_loss"]) & tf.math.is_finite(metrics["g_loss"])
            return done + 1, finite, [t + metrics[k] for t, k in zip(totals, METRICS)]

        # `count` is a loop-condition tensor, not a trip count, so XLA does not take it for
        # a compile-time constant and recompile for every chunk length.
        done, finite, totals = tf.while_loop(
            lambda done, finite, totals: (done < count) & finite, body,
            (tf.constant(0), tf.constant(True), [tf.constant(0.0)] * len(METRICS)))
        n = tf.cast(tf.maximum(done, 1), tf.float32)
        out = {k: t / n for k, t in zip(METRICS, totals)}
        out.update(steps=done, finite=finite)
        return out

    return multi_step


def warm_up(multi_step, config):
    """Traces and compiles `multi_step` for config's shapes without changing the state: the
    loop runs 0 iterations on zero batches of the training stream's shapes and dtypes."""
    k, batch = config.steps_per_call, config.batch_size * config.d_steps
    multi_step(tf.zeros([k, batch, *models.image_shape(config.channels)]), tf.constant(0),
               tf.constant(0),
               tf.zeros([k, batch], tf.int32))


def compile_loop(state, config, strategy=None, log=print):
    """make_multi_step for `config`, traced and compiled by warm_up.

    With XLA's persistent compilation cache on (gan.training.compilation), a failed compilation
    means a cache entry could not be read (e.g. one cut short by a full disk or a crash): this
    machine's entries are removed and the loop compiled afresh, once; if that fails too,
    raises compilation.CacheError. The state does not change either way.
    """
    # Loading a cached program makes TensorFlow log "E" lines although it succeeds; they are
    # dropped here, where the load happens, and every other line of fd 2 is kept.
    with compilation.quiet_cache_messages():
        return _compile_loop(state, config, strategy, log)


def _compile_loop(state, config, strategy, log):
    cache = compilation.active_cache()
    try:
        multi_step = make_multi_step(state, config.xla, strategy)
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
