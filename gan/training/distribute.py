"""Scaling out on tf.distribute: choosing the strategy, which process writes, and where.

Strategies (`--strategy`):
  default       one device, TensorFlow's default strategy (what train_lib always did);
  mirrored      tf.distribute.MirroredStrategy over all local GPUs (or, without GPUs, over
                the logical CPU devices `--cpu_devices` makes);
  multi_worker  tf.distribute.MultiWorkerMirroredStrategy; the cluster and this process's
                place in it come from the TF_CONFIG environment variable.

The global batch (`--batch_size`) is split evenly over the replicas. Only the chief (task
type "chief", or worker 0 when the cluster has no chief) writes images, logs and
checkpoints in the real folders; other workers still take part in every checkpoint save (it
reads variables with collectives) but write into a temporary folder that is deleted when
they finish, as TensorFlow's multi-worker guide advises.
"""

import contextlib
import dataclasses
import json
import os
import shutil
import tempfile

import tensorflow as tf

from gan.config import STRATEGIES


def configure_cpu_devices(count):
    """Splits the (first) physical CPU into `count` logical devices, so MirroredStrategy can
    run replicas on a machine without GPUs. Must run before TensorFlow initialises its
    devices (before the first op); raises ValueError naming --cpu_devices otherwise."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    wanted = [tf.config.LogicalDeviceConfiguration()] * count
    current = tf.config.get_logical_device_configuration(cpu)
    if current is not None and len(current) == count:
        return  # already done (e.g. a second run in the same process)
    try:
        tf.config.set_logical_device_configuration(cpu, wanted)
    except RuntimeError as e:
        raise ValueError(f"--cpu_devices={count} must be set before TensorFlow initialises "
                         f"its devices (it has: {e})") from None


def read_tf_config():
    """The TF_CONFIG environment variable as a dict; ValueError naming --strategy if it is
    missing or not JSON with a cluster and a task."""
    text = os.environ.get("TF_CONFIG", "")
    if not text:
        raise ValueError("--strategy=multi_worker needs the TF_CONFIG environment variable "
                         "(the cluster's addresses and this worker's task; see "
                         "docs/scaling.md)")
    try:
        tf_config = json.loads(text)
        tf_config["cluster"], tf_config["task"]["type"], tf_config["task"]["index"]
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"--strategy=multi_worker: TF_CONFIG must be JSON with 'cluster' and "
                         f"'task' {{'type', 'index'}}, got {text!r} ({e})") from None
    return tf_config


def make_strategy(name):
    """The tf.distribute strategy called `name` (one of STRATEGIES), None for "default" (no
    strategy: train_lib then runs exactly its one-device step); ValueError naming
    --strategy for an unknown name or multi_worker without TF_CONFIG."""
    if name == "default":
        return None
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = gpus or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if name == "multi_worker":
        read_tf_config()
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"--strategy must be one of {', '.join(STRATEGIES)}, got '{name}'")


def num_replicas(strategy):
    """Replicas of `strategy` (make_strategy's; None is one device)."""
    return 1 if strategy is None else strategy.num_replicas_in_sync


def is_chief(strategy):
    """True for the process that writes the run's files: always, except under a
    multi-worker strategy, where it is task type "chief" (or "worker" 0 if there is none)."""
    if strategy is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    resolver = strategy.cluster_resolver
    return is_chief_task(resolver.task_type, resolver.task_id,
                         resolver.cluster_spec().as_dict())


def is_chief_task(task_type, task_id, cluster):
    """True for the chief of `cluster` ({job name: addresses}, as in TF_CONFIG): the task of
    type "chief", or "worker" 0 when there is no chief (or no task type: one process)."""
    if task_type is None or task_type == "chief":
        return True
    return task_type == "worker" and task_id == 0 and "chief" not in cluster


def check_global_batch(config, replicas):
    """ValueError naming --batch_size unless the global batch splits evenly over `replicas`
    (into multiples of 4 per replica with --minibatch_std, whose groups must not span two
    replicas, and of 2 with --diversity, whose pairs must not)."""
    group = 4 if config.minibatch_std else 2 if config.diversity else 1
    unit = replicas * group
    if config.batch_size % unit:
        need = f"{replicas} replicas" + {4: " x 4 (--minibatch_std groups)",
                                         2: " x 2 (--diversity pairs)", 1: ""}[group]
        raise ValueError(f"--batch_size={config.batch_size} is the global batch and must be "
                         f"a multiple of {unit} ({need})")


@contextlib.contextmanager
def writing_folders(config, chief):
    """Yields (config, checkpoint save folder) for this process: the chief's are config's own;
    another worker's images, logs and checkpoints go to a temporary folder, deleted on exit
    (also on an exception), so only the chief's files remain."""
    if chief:
        yield config, config.checkpoint_dir
        return
    folder = tempfile.mkdtemp(prefix="gan-worker-")
    try:
        yield (dataclasses.replace(config, image_dir=os.path.join(folder, "images"),
                                   logs_dir=os.path.join(folder, "logs"), quiet=True),
               os.path.join(folder, "checkpoints"))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def check_same_start(strategy, step):
    """Raises ValueError unless every worker restored the same step counter `step` (a
    worker that cannot see the chief's --checkpoint_dir would start again from 0 and the
    replicas would train different steps). A no-op without a multi-worker strategy."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return
    # Sums of s and s^2 over the replicas: equal steps iff R * sum(s^2) == sum(s)^2, and
    # every worker computes the same sums, so all of them decide alike (none is left
    # waiting in a collective).
    @tf.function  # eager collectives are slow and warned about
    def sums():
        values = strategy.run(lambda: tf.constant([step, step * step], tf.int64))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, values, axis=None)

    total, squares = sums().numpy()
    if strategy.num_replicas_in_sync * squares != total * total:
        raise ValueError(
            f"the workers restored different steps (this one {step}): --checkpoint_dir must "
            "be one folder that every worker reads (a shared file system)")
