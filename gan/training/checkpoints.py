"""Checkpoints: saving with `tf.train.CheckpointManager`, restoring the newest good one.

A damaged newest checkpoint (truncated data, missing index, garbage `checkpoint` state file)
is skipped with a warning and the previous one is used; existing checkpoints are never
deleted by a failed restore, and a run never silently restarts from step 0 over them.
"""

import glob
import json
import os
import re
import shutil
import time

import tensorflow as tf

from gan import files
from gan.models import networks as models
from gan.training import resume


class CheckpointError(RuntimeError):
    """Checkpoints exist but none can be used (damaged, or from another configuration)."""


# What reading a damaged checkpoint raises: OpError (DataLoss, NotFound, ...), ValueError
# (also undecodable text), IndexError ("Read less bytes than requested", an empty data
# file), AssertionError (restore matched no values).
DAMAGE_ERRORS = (tf.errors.OpError, ValueError, IndexError, AssertionError)


def make_manager(state, directory, max_to_keep, log=print):
    """A CheckpointManager saving `state` as <directory>/ckpt-<step>.

    A damaged `checkpoint` state file is first set aside (see set_aside_damaged_state_file):
    TensorFlow's manager would otherwise raise on an empty or binary one.
    """
    set_aside_damaged_state_file(directory, log=log)
    return tf.train.CheckpointManager(state, directory, max_to_keep=max_to_keep,
                                      step_counter=state.step)


def save(manager, step):
    """manager.save(checkpoint_number=step): writes ckpt-<step> and returns its prefix.

    On a full disk (files.is_disk_full: TensorFlow's ResourceExhaustedError from SaveV2 or
    MergeV2Checkpoints, or an OSError) removes what the failed save left, its
    ckpt-<step>_temp folder, the files of ckpt-<step> and a temporary state file, and
    raises files.DiskFullError saying how much a checkpoint needs. The earlier checkpoints
    and the state file listing them are not touched: a rerun resumes from the newest.
    """
    directory = manager.directory
    before = _file_stamps(directory)
    try:
        return manager.save(checkpoint_number=step)
    except Exception as error:
        if not files.is_disk_full(error):
            raise
        left = remove_failed_save(directory, step, before)
        note = f"Removed what the save left ({', '.join(left)})." if left else ""
        raise files.DiskFullError(f"checkpoint ckpt-{step}", directory,
                                  checkpoint_bytes(directory, manager.checkpoint), note) from error


def _file_stamps(directory):
    """{name: (size, mtime_ns)} of the entries of `directory`."""
    stamps = {}
    for name in os.listdir(directory) if os.path.isdir(directory) else []:
        info = os.stat(os.path.join(directory, name))
        stamps[name] = (info.st_size, info.st_mtime_ns)
    return stamps


def remove_failed_save(directory, step, before):
    """Removes from `directory` what a failed save of ckpt-<step> made or changed, against
    `before` (_file_stamps before the save): its ckpt-<step>_temp* folder (TensorFlow's
    shards before they are merged), ckpt-<step>.index and .data-* files, and a
    checkpoint.tmp* state file. Returns the names removed."""
    removed = []
    pattern = re.compile(rf"ckpt-{step}(_temp.*|\.index|\.data-\d+-of-\d+)|checkpoint\.tmp.*")
    for name, stamp in _file_stamps(directory).items():
        if not pattern.fullmatch(name) or before.get(name) == stamp:
            continue
        path = os.path.join(directory, name)
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.remove(path)
        removed.append(name)
    return sorted(removed)


def checkpoint_bytes(directory, checkpoint):
    """About how many bytes a checkpoint takes: the size of the newest one in `directory`,
    else that of the variables of `checkpoint` (a TrainState) its data file holds."""
    for prefix in list_checkpoints(directory):
        paths = glob.glob(glob.escape(prefix) + ".*")
        if any(path.endswith(".index") for path in paths):
            return sum(os.path.getsize(path) for path in paths)
    variables = []
    for name in ("generator", "discriminator", "g_optimizer", "d_optimizer", "ema_generator"):
        part = getattr(checkpoint, name, None)
        variables += list(getattr(part, "variables", []))
    return sum(v.numpy().nbytes for v in variables) or None


def set_aside_damaged_state_file(directory, log=print):
    """Renames an unreadable <directory>/checkpoint to checkpoint.corrupt-<time>, with a
    warning; returns the new path, or None if the file is fine or absent.

    That file only lists the checkpoints for rotation; restore_latest finds checkpoints from
    their own files. No ckpt-* file is touched: the ones the lost list named are kept (no
    longer rotated away), and a fresh list starts with the next save.
    """
    path = os.path.join(directory, "checkpoint")
    if not os.path.lexists(path):
        return None
    try:
        # None for text that is not a CheckpointState (TensorFlow logs the parse error);
        # raises for an empty file (ValueError) or bytes that are not UTF-8.
        if tf.train.get_checkpoint_state(directory) is not None:
            return None
    except (ValueError, tf.errors.OpError):  # UnicodeDecodeError is a ValueError
        pass
    stamp = f"{path}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}"
    backup, n = stamp, 1
    while os.path.lexists(backup):  # never overwrite an earlier backup
        backup, n = f"{stamp}-{n}", n + 1
    os.replace(path, backup)
    log(f"WARNING: the checkpoint state file {path} is damaged; moved it to {backup}. "
        "Checkpoints are found from their own files; none was deleted.")
    return backup


def list_checkpoints(directory):
    """Checkpoint prefixes in `directory`, newest (highest step) first, found from the files
    themselves so a damaged `checkpoint` state file cannot hide them."""
    prefixes = set()
    for path in glob.glob(os.path.join(directory, "ckpt-*")):
        match = re.match(r"(.*ckpt-(\d+))\.(index|data-\d+-of-\d+)$", path)
        if match:
            prefixes.add((int(match.group(2)), match.group(1)))
    return [prefix for _, prefix in sorted(prefixes, reverse=True)]


def read_parts(prefix, **parts):
    """Restores `parts` (objects named like the TrainState attributes that hold them in a
    checkpoint, e.g. step=tf.Variable(0, tf.int64)) from the checkpoint `prefix`, ignoring
    the rest. Raises AssertionError if one of them is not in it."""
    status = tf.train.Checkpoint(**parts).restore(prefix)
    status.assert_existing_objects_matched().expect_partial()


def read_architecture(prefix):
    """The architecture JSON stored in a checkpoint, or None if it has none."""
    tf.train.load_checkpoint(prefix)  # a missing or damaged checkpoint raises here
    architecture = tf.Variable("", dtype=tf.string)
    try:
        read_parts(prefix, architecture=architecture)
    except AssertionError:
        return None
    return architecture.numpy().decode()


def describe_failure(prefix, error):
    """One line naming a checkpoint and why it could not be used."""
    return f"{prefix} ({type(error).__name__}: {str(error).splitlines()[0][:200]})"


def restore_latest(state, manager, record, log=print):
    """Restores the newest usable checkpoint into `state`; returns its step (0 if none).

    record: this run's JSON record (gan.training.resume.record(config); a bare
    TrainConfig.architecture() also works, without the run settings' checks). Raises
    CheckpointError, naming each flag, if checkpoints exist but were made with another
    architecture or with run settings a resume may not change (gan.training.resume; nothing is
    overwritten), or if every checkpoint is damaged. Logs the settings this run changes.
    From here on `state` holds `record`, so its checkpoints record this run's settings.
    """
    candidates = list_checkpoints(manager.directory)
    skipped = []
    for prefix in candidates:
        try:
            saved = read_architecture(prefix)
        except DAMAGE_ERRORS as e:
            skipped.append(describe_failure(prefix, e))
            continue
        problems, notes = resume.check(saved, record) if saved is not None else ([], [])
        if problems:
            old, new = resume.architecture_of(saved), resume.architecture_of(record)
            records = ("" if old == new else
                       f"\n  saved:    {json.dumps(old, sort_keys=True)}"
                       f"\n  this run: {json.dumps(new, sort_keys=True)}")
            raise CheckpointError(
                f"{prefix} was made with a different configuration:\n  " + "\n  ".join(problems)
                + records + "\nResume with the checkpoint's settings, or use another "
                "--checkpoint_dir (and --image_dir) for a new run; nothing was changed.")
        try:
            state.restore(prefix).assert_existing_objects_matched()
        except DAMAGE_ERRORS as e:
            skipped.append(describe_failure(prefix, e))
            continue
        for item in skipped:
            log(f"WARNING: skipped damaged checkpoint {item}")
        log(f"Restored {prefix} (step {int(state.step.numpy())}).")
        for note in notes:
            log(note)
        state.architecture.assign(record)
        return int(state.step.numpy())
    if not candidates:
        state.architecture.assign(record)
        return 0
    raise CheckpointError(
        f"Checkpoints exist in {manager.directory} but none could be restored:\n  "
        + "\n  ".join(skipped)
        + "\nRefusing to start again from step 0 over them; move them away to start afresh.")


def restore_generator(checkpoint_dir, attempts=5):
    """(generator, architecture dict, step) from the newest usable checkpoint in
    `checkpoint_dir`, reading only the generator's weights (the EMA ones for a run trained
    with --ema); a damaged newest one is skipped. For a --clusters run the architecture
    also holds "cluster_prior", the clusters' shares of the training images, and for a run
    with a sampling --truncation "truncation" (inference.run_truncation reads it): how the
    generator is to be sampled.

    Takes no lock: it may read the folder of a run that is training. If every checkpoint
    it found failed and the folder then holds other ones (the run saved new ones and
    rotated those away while they were read), it looks again, up to `attempts` times.

    Raises CheckpointError if the folder does not exist, holds no checkpoint, or none of its
    checkpoints can be restored.
    """
    if os.path.exists(checkpoint_dir) and not os.path.isdir(checkpoint_dir):
        raise CheckpointError(f"{checkpoint_dir} is a file, not a checkpoint folder (give "
                              "the folder gan.train's --checkpoint_dir wrote)")
    if not os.path.isdir(checkpoint_dir):
        raise CheckpointError(f"{checkpoint_dir} does not exist")
    candidates = list_checkpoints(checkpoint_dir)
    if not candidates:
        raise CheckpointError(
            f"{checkpoint_dir} holds no checkpoint (ckpt-<step>.index); train one first with "
            f"python -m gan.train --checkpoint_dir={checkpoint_dir}")
    for _ in range(attempts):
        failures = []
        for prefix in candidates:
            try:
                return _read_generator(prefix)
            except DAMAGE_ERRORS as e:
                failures.append(describe_failure(prefix, e))
        seen, candidates = candidates, list_checkpoints(checkpoint_dir)
        if candidates == seen:
            break
    raise CheckpointError(f"no checkpoint in {checkpoint_dir} could be restored:\n  "
                          + "\n  ".join(failures))


def _read_generator(prefix):
    """restore_generator's (generator, architecture dict, step) of the checkpoint `prefix`;
    raises one of DAMAGE_ERRORS if it cannot be read."""
    saved = read_architecture(prefix)
    if saved is None:
        raise ValueError("it has no architecture record")
    architecture = resume.architecture_of(saved)
    generator = models.build_generator(architecture)
    # With --ema the moving average is the generator users see (as in training).
    parts = {"ema_generator" if architecture.get("ema") else "generator": generator,
             "step": tf.Variable(0, dtype=tf.int64)}
    if architecture.get("clusters"):  # what sampling draws the cluster ids from
        parts["cluster_prior"] = tf.Variable(
            tf.zeros([models.architecture_label_count(architecture)]))
    read_parts(prefix, **parts)
    if "cluster_prior" in parts:
        architecture["cluster_prior"] = parts["cluster_prior"].numpy().tolist()
    truncation = json.loads(saved).get(resume.RUN_KEY, {}).get("truncation")
    if truncation:
        architecture["truncation"] = truncation
    return generator, architecture, int(parts["step"].numpy())
