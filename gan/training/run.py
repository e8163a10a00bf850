"""A training run: restore, then the compiled loop over chunks, then periodic actions.

    state = step.create_state(config)          # gan.training.step: the state and one iteration
    restore the newest checkpoint into state
    multi_step = loop.compile_loop(state, ...)  # gan.training.loop: K iterations per call
    for each chunk of the training stream:
        metrics = multi_step(batches, ...)
        for action in actions: action(step, state, metrics)   # gan.training.actions
"""

import concurrent.futures
import contextlib
import functools
import json
import os
import shutil
import time

import numpy as np
import tensorflow as tf

from gan.training import actions as actions_lib
from gan import datasets, images
from gan.datasets import load as data, stacked
from gan.models import inference
from gan.training import (checkpoints,
    compilation,
    distribute,
    interrupts,
    loop,
    monitor,
    resume,
    runlock)
from gan.training import step as step_lib

NonFiniteLossError = actions_lib.NonFiniteLossError  # what train() raises on NaN/Inf


def train(config, log=print):
    """Trains to config.epochs iterations, resuming from config.checkpoint_dir; returns the
    state (gan.training.step.TrainState).

    The image for epoch e (0-based, e % save_every == 0) is written after iteration e,
    i.e. when the step counter reaches e + 1, as in the original loop.

    Raises ValueError for a bad config, NonFiniteLossError on a NaN/Inf loss or weight
    (nothing bad is saved), compilation.CacheError if XLA's compilation cache cannot be used
    (before any training), runlock.FolderInUseError if another process holds
    config.checkpoint_dir (before any work), files.DiskFullError on a full disk (no
    partial checkpoint is left), and interrupts.Interrupted after SIGINT/SIGTERM, once a
    checkpoint of the current step is written and the pending images are flushed.

    Under config.strategy (gan.training.distribute) config.batch_size is the global batch; a worker
    that is not the chief restores from config.checkpoint_dir like the chief but writes its
    images, logs and checkpoints into a temporary folder that is deleted at the end.
    """
    config.validate()
    config.check_folders()
    compilation.configure(config, log=log)  # no-op if the entry point did it
    if config.cpu_devices:
        distribute.configure_cpu_devices(config.cpu_devices)
    strategy = distribute.make_strategy(config.strategy)
    distribute.check_global_batch(config, distribute.num_replicas(strategy))
    chief = distribute.is_chief(strategy)
    # The lock needs the folder; a run refused before it trains removes a folder it made.
    made = not os.path.isdir(config.checkpoint_dir)
    os.makedirs(config.checkpoint_dir, exist_ok=True)
    try:
        # One writer per run folder: the chief holds its lock while it trains
        # (gan.training.runlock).
        lock = runlock.hold(config.checkpoint_dir, log) if chief else contextlib.nullcontext()
        with lock, distribute.writing_folders(config, chief) as (config, save_to):
            return _train(config, strategy, save_to, log)
    except (ValueError, data.DataUnavailableError, checkpoints.CheckpointError,
            compilation.CacheError):  # refusals, all raised before the first training step
        if made:
            remove_unused_folder(config.checkpoint_dir)
        raise


def remove_unused_folder(folder):
    """Removes `folder`, made by a run that was refused, if it holds nothing but the lock
    and logs without a training record: a refused command leaves nothing behind, and no
    checkpoint or metric of a run that trained is ever lost."""
    history = os.path.join(folder, "logs", monitor.HISTORY_FILE)
    if checkpoints.list_checkpoints(folder) or (os.path.exists(history)
                                                and monitor.read_history(history)):
        return
    if not set(os.listdir(folder)) - {runlock.LOCK_FILE, "logs"}:
        shutil.rmtree(folder, ignore_errors=True)


def _train(config, strategy, save_to, log):
    """train() in this process's writing folders: checkpoints are restored from
    config.checkpoint_dir and saved into `save_to`."""
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    state = step_lib.create_state(config, strategy)
    restore_from = checkpoints.make_manager(state, config.checkpoint_dir,
                                            config.keep_checkpoints, log=log)
    manager = (restore_from if save_to == config.checkpoint_dir
               else checkpoints.make_manager(state, save_to, 1, log=log))
    start = checkpoints.restore_latest(state, restore_from, resume.record(config), log=log)
    distribute.check_same_start(strategy, start)
    apply_learning_rates(state, config, log=log)
    if start >= config.epochs:
        log(f"Already trained {start} of {config.epochs} epochs; nothing to do.")
        return state
    # Before the logs and the compile: a run without its data stops here, having written
    # nothing (a glob of the data folder; the data are loaded after the compile).
    data.check_prepared(config.dataset, config.data_dir)
    log(f"{'Resuming from' if start else 'Starting at'} step {start}; "
        f"training to {config.epochs} epochs (one batch of {config.batch_size} each).")
    if config.xla and strategy is not None:
        log(f"Note: --xla is not used with --strategy={config.strategy} (XLA cannot compile "
            "the replicas' all-reduce into the loop); the loop runs as a plain tf.function.")
    # The writer thread writes logs and images while the loop runs on; on exit (also by an
    # exception) it finishes its jobs before the signal handlers go.
    with interrupts.stop_requested() as interrupt, \
            monitor.RunMonitor(config, start, log) as run_monitor, \
            images.BackgroundWriter() as writer:
        # While XLA compiles the loop this thread builds no TensorFlow function: the names
        # tf.data, the strip and the summaries would take meanwhile shift those in the
        # loop's own, which are part of the key of XLA's compilation cache.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            compiled = pool.submit(loop.compile_loop, state, config, strategy, log)
            renderer = images.StripRenderer(config.num_images,
                                            image_shape=config.image_shape)
            multi_step = compiled.result()
        # After the checkpoint checks: a refused resume or a finished run needs no data.
        train_images, train_labels = load_training_data(config, state)
        elements = training_elements(train_images, train_labels, config, start)
        checkpoint = actions_lib.SaveCheckpoint(manager, config.checkpoint_every,
                                                config.epochs, saved_step=start, writer=writer)
        actions = [
            actions_lib.NonFiniteGuard(config.checkpoint_dir),
            actions_lib.WriteStrip(state, asked_labels(config, state, config.num_images),
                                   config.image_dir, config.save_every, writer, run_monitor,
                                   renderer),
            actions_lib.LogMetrics(writer, run_monitor, config.num_images),
            checkpoint,
        ]
        if config.eval_every:
            actions.append(actions_lib.Evaluate(
                config.eval_every, config.eval_samples,
                asked_labels(config, state, config.eval_samples), config.truncation,
                config.data_dir, writer, run_monitor, log))
        actions.append(actions_lib.StopOnSignal(interrupt, checkpoint, config.epochs))
        step, t0 = start, time.time()
        while step < config.epochs:
            batches, labels, first, end = next(elements)
            while step < min(end, config.epochs):
                stop = min([end, config.epochs] + [
                    due for due in (a.next_due(step) for a in actions) if due is not None])
                metrics = multi_step(batches, tf.constant(step - first),
                                     tf.constant(stop - step), labels)
                step = stop
                for action in actions:
                    action(step, state, metrics)
    gif, plot = run_monitor.finish()
    log(f"Done: {step - start} iterations in {time.time() - t0:.1f}s; "
        f"images in {config.image_dir}, checkpoints in {config.checkpoint_dir}.")
    log(f"Logs in {config.resolved_logs_dir()} (tensorboard --logdir "
        f"{config.resolved_logs_dir()}): loss plot {plot}"
        + (f", progress GIF {gif}" if gif else "") + ".")
    return state


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


def load_training_data(config, state):
    """(images uint8/float [N, 28, 28], labels int [N]) of the training split of the
    dataset's source (for a stacked dataset the one its channels are drawn from: the stream
    stacks them on the fly). With --clusters the labels are k-means cluster ids (the digits
    are never used), and the clusters' shares go into state.cluster_prior, which sampling
    draws from."""
    spec = datasets.get(config.dataset)
    train_images, train_labels = data.load_split(spec.source, "train", config.data_dir)
    if config.clusters:
        train_labels = data.cluster_labels(train_images, config.clusters, config.seed)
        prior = np.bincount(train_labels, minlength=config.clusters) / len(train_labels)
        if spec.stacked_from:  # each channel's cluster: tuples of them
            prior = stacked.cluster_prior(prior, spec.channels)
        state.cluster_prior.assign(prior)
    return train_images, train_labels


def asked_labels(config, state, num):
    """The labels int32 [num] the run's generator is asked for in strips and evaluation:
    the one rule of gan.models.inference.sampling_labels (None for unconditional runs)."""
    architecture = json.loads(config.architecture())
    if config.clusters:
        architecture["cluster_prior"] = state.cluster_prior.numpy().tolist()
    return inference.sampling_labels(architecture, num)


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

    spec = datasets.get(config.dataset)
    make_batches = data.make_batches
    if spec.stacked_from:  # labels: tuples of the channels' classes or clusters
        make_batches = functools.partial(stacked.make_batches, base=config.clusters or None,
                                         dataset=spec.name)

    def make(first):
        return make_batches(images, labels, batch, config.seed, first, k)

    aligned = start
    if (start - 1) % config.save_every:
        aligned = actions_lib.next_boundary(start, config.save_every, offset=1)
        if aligned - start >= k:
            aligned = start
    if aligned > start:
        batches, batch_labels = next(iter(make(start)))
        yield batches, batch_labels, start, aligned
    for i, (batches, batch_labels) in enumerate(make(aligned)):
        yield batches, batch_labels, aligned + i * k, aligned + (i + 1) * k
