"""Results across training seeds: `python -m gan.study --recipes=conditional --seeds=0,1,2
--out=studies/NAME`.

Each (recipe, seed) cell is a normal training run in its own folder, <out>/<recipe>/seed<S>/,
started as `python -m gan.train --flagfile=<recipe> [flags after the study's own] --seed=S`
with the cell's folders, then judged by `python -m gan.evaluate --json_out`. The study adds
no training or evaluation code of its own: a cell's run is the gan.train command recorded in
its cell.json, run with the same thread counts. Flags that are not the study's own (e.g.
--epochs=2000, --data_dir=...) go to every cell's gan.train.

Rerunning the same command resumes: finished cells are skipped, an interrupted one carries
on from its checkpoint. --parallel=N runs N cells at once, the threads split between them;
--cell=I runs cell I alone (one task of a job array on a shared folder), and --collect builds
results.json, results.md and results.png from the cells that have finished, naming the
missing ones; --reevaluate judges the finished cells again with today's evaluator (from
their checkpoints) and rebuilds them. See docs/study.md.

Exit codes: 0 done; 1 some cell's training or evaluation failed (its log is named); 2 bad
flags, or --out in use by another study (before any work); 130/143 stopped by SIGINT/SIGTERM
(each running cell saves a checkpoint first).
"""

import contextlib
import dataclasses
import errno
import glob
import json
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import time

from absl import flags

from gan import cli, machine

FLAGS = flags.FLAGS

flags.DEFINE_list("recipes", None,
                  "Recipes to compare: names of experiments/*.flags (e.g. conditional) or "
                  "paths to flagfiles of gan.train.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Training seeds (gan.train --seed) of every recipe.")
flags.DEFINE_string("out", None, "The study's folder: one folder per cell, and the results.")
# 2: on 2 CPU cores a 2 x 2 study of MLP recipes ran 1.2x faster with two 1-thread cells at
# once than one 2-thread cell at a time (docs/study.md); one such run does not fill 2 cores.
flags.DEFINE_integer("parallel", 2, "Cells trained at once; --threads are split between them "
                     "(each cell gets at least one).")
flags.DEFINE_integer(
    "threads", 0,
    "TensorFlow threads of the whole study (0 = the CPUs this process may use); each cell "
    "gets threads // parallel for its intra-op and inter-op pools (and OpenMP).")
flags.DEFINE_integer(
    "cell", None,
    "Run only cell I (0-based: recipes in the order given, seeds within each), e.g. "
    "--cell=$SLURM_ARRAY_TASK_ID; several may run at once on one --out.")
flags.DEFINE_bool("collect", False,
                  "Only build results.json/.md/.png in --out from the finished cells, naming "
                  "the missing ones; trains nothing, takes no lock, needs only --out.")
flags.DEFINE_bool("reevaluate", False,
                  "Only judge every finished cell again with today's gan.evaluate (a figure "
                  "added since, say), from the checkpoints in its folder, and rebuild the "
                  "results; trains nothing, needs only --out.")
flags.DEFINE_integer("num_samples", None,
                     "gan.evaluate --num_samples of every cell (default: the evaluator's, "
                     "10,000; 26,000 for Stacked MNIST).")

# Flags of gan.train that the study sets for each cell; given to the study, they would make
# every cell write into one folder or train one seed.
OWN_TRAIN_FLAGS = ("seed", "checkpoint_dir", "image_dir", "logs_dir")
# TrainConfig fields a resumed cell may change: where things are, how often it prints, speed.
# Any other difference from the cell's record (another recipe text, other flags) is refused.
FREE_FIELDS = ("data_dir", "xla_cache_dir", "checkpoint_dir", "image_dir", "logs_dir",
               "log_every_secs", "quiet", "steps_per_call")

STUDY_FILE = "study.json"  # the study's definition: recipes, seeds, flags, cells
STATE_FILE = "state.json"  # a cell's config and time so far, from its first start
CELL_FILE = "cell.json"  # a finished cell's record; its presence means "finished"
EVAL_FILE = "evaluate.json"  # gan.evaluate --json_out

# Evaluator figures (gan.evaluation.evaluator.ROWS, gan.datasets.stacked.mode_metrics) ->
# (which way is better, format). worst_class_accuracy and class_margin are the study's own:
# the lowest of a conditional generator's per-class accuracies (label_accuracy), and the
# lowest of those minus the classifier's own on real test images of the class.
FIGURES = {
    "fd": ("lower", "{:.3f}"), "kid": ("lower", "{:.5f}"),
    "classifier_score": ("higher", "{:.3f}"), "modes_covered": ("higher", "{:.1f}"),
    "class_kl": ("lower", "{:.4f}"), "precision": ("higher", "{:.3f}"),
    "recall": ("higher", "{:.3f}"), "kl": ("lower", "{:.4f}"),
    "kl_channels": ("lower", "{:.4f}"), "dependence": ("lower", "{:.4f}"),
    "worst_class_accuracy": ("higher", "{:.4f}"), "class_margin": ("higher", "{:+.4f}"),
}
NOT_FIGURES = ("num_samples", "kid_std")  # numbers in the evaluator's JSON that are not judged

THREAD_VARIABLES = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS")
PROGRESS = re.compile(r"^epoch (\d+)/(\d+) \(\d+%\)(?:\s+(\d+) it/s)?")

# Parses each argv list with gan.train's own flags into its TrainConfig (as a dict) and
# validates it, in a child process: gan.train's flags must not meet the study's in one
# FlagValues, and this reads no data and imports no TensorFlow (under a second).
_PARSE = """
import dataclasses, json, sys
from absl import flags
from gan import train
out = []
for argv in json.loads(sys.argv[1]):
    train.FLAGS.unparse_flags()
    try:
        train.FLAGS(["gan.train", *argv])
        config = train.config_from_flags()
        config.validate()
        out.append({"config": dataclasses.asdict(config)})
    except (flags.Error, ValueError) as e:
        out.append({"error": str(e)})
print(json.dumps(out))
"""


class StudyError(ValueError):
    """Bad input to the study (exit 2, before any work)."""


# --- the study's definition -----------------------------------------------------------------


@dataclasses.dataclass
class Cell:
    """One (recipe, seed) training run: its index in the study, its folder, its TrainConfig
    fields (a dict) and the gan.train arguments that give them."""

    index: int
    recipe: str
    flagfile: str
    seed: int
    folder: str
    train_args: list
    config: dict = None

    @property
    def name(self):
        return f"{self.recipe} seed {self.seed}"

    def path(self, *parts):
        return os.path.join(self.folder, *parts)


def split_argv(argv):
    """(the study's own arguments, the rest for gan.train), keeping their order. Own: every
    flag defined in this process (the study's and absl's, e.g. --help), by name or --no<name>;
    a `--name value` pair stays together."""
    own, rest = [argv[0]], []
    i = 1
    while i < len(argv):
        arg = argv[i]
        name = arg[2:].split("=", 1)[0] if arg.startswith("--") else arg.lstrip("-")
        bool_name = name[2:] if name.startswith("no") else None
        target = rest
        if arg.startswith("-") and name != "flagfile" and (
                name in FLAGS or (bool_name in FLAGS and FLAGS[bool_name].boolean)):
            target = own
        target.append(arg)
        # A value in the next argument: `--epochs 2000` (not for booleans or `--x=v`).
        takes_value = "=" not in arg and arg.startswith("-") and not (
            (name in FLAGS and FLAGS[name].boolean) or bool_name in FLAGS)
        if takes_value and i + 1 < len(argv) and not argv[i + 1].startswith("-"):
            target.append(argv[i + 1])
            i += 1
        i += 1
    return own, rest


TRAIN_ARGS = []  # gan.train's arguments given to the study (set by run(), from sys.argv)


def repo_dir():
    """The folder holding the `gan` package (its repository, where experiments/ is)."""
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def resolve_recipe(recipe):
    """(name, absolute flagfile path) of a --recipes entry: a flagfile's path, or the name of
    experiments/<name>.flags (looked up in the current folder, then beside the package)."""
    if os.path.isfile(recipe):
        name = os.path.basename(recipe)
        return (name[:-len(".flags")] if name.endswith(".flags") else name), \
            os.path.abspath(recipe)
    for folder in (os.getcwd(), repo_dir()):
        path = os.path.join(folder, "experiments", f"{recipe}.flags")
        if os.path.isfile(path):
            return recipe, os.path.abspath(path)
    known = sorted(name[:-6] for name in os.listdir(os.path.join(repo_dir(), "experiments"))
                   if name.endswith(".flags")) if os.path.isdir(
        os.path.join(repo_dir(), "experiments")) else []
    raise StudyError(f"--recipes: '{recipe}' is neither a flagfile nor one of "
                     f"experiments/*.flags ({', '.join(known) or 'none found'})")


def parse_seeds(values):
    try:
        seeds = [int(v) for v in values]
    except ValueError:
        raise StudyError(f"--seeds must be integers, got {','.join(values)}") from None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise StudyError(f"--seeds must be distinct non-negative integers, got {','.join(values)}")
    return seeds


def check_train_args(args):
    """Refuses the gan.train flags the study sets per cell."""
    for arg in args:
        name = arg.lstrip("-").split("=", 1)[0]
        if arg.startswith("-") and name in OWN_TRAIN_FLAGS:
            raise StudyError(f"--{name} is set by the study for each cell (--seeds; the cells' "
                             "folders under --out): leave it out")


def make_cells(out, recipes, seeds, train_args):
    """The study's cells, recipe by recipe, seed by seed; cell i is --cell=i."""
    cells = []
    for name, flagfile in recipes:
        for seed in seeds:
            folder = os.path.join(out, name, f"seed{seed}")
            args = [f"--flagfile={flagfile}", *train_args, f"--seed={seed}",
                    f"--checkpoint_dir={os.path.join(folder, 'checkpoints')}",
                    f"--image_dir={os.path.join(folder, 'images')}", "--logs_dir="]
            cells.append(Cell(len(cells), name, flagfile, seed, folder, args))
    return cells


def parse_configs(cells):
    """Fills each cell's config with gan.train's parse of its arguments; StudyError naming
    the recipe for the first that gan.train would refuse."""
    result = subprocess.run([sys.executable, "-c", _PARSE, json.dumps([c.train_args
                                                                      for c in cells])],
                            capture_output=True, text=True, cwd=os.getcwd())
    if result.returncode != 0:
        raise StudyError(f"cannot parse gan.train's flags: {result.stderr.strip()[-2000:]}")
    for cell, parsed in zip(cells, json.loads(result.stdout.strip().splitlines()[-1])):
        if "error" in parsed:
            raise StudyError(f"recipe {cell.recipe} ({cell.flagfile}) with the study's flags: "
                             f"{parsed['error']}")
        cell.config = parsed["config"]


def definition(out, cells, recipes, seeds, train_args, num_samples):
    """What study.json holds: enough for --collect to list the cells, and for a rerun to
    check that it is the same study."""
    return {"recipes": [{"name": n, "flagfile": f, "given": g}
                        for (n, f), g in zip(recipes, FLAGS.recipes)],
            "seeds": seeds, "train_args": train_args, "num_samples": num_samples,
            "cells": [{"index": c.index, "recipe": c.recipe, "seed": c.seed,
                       "folder": os.path.relpath(c.folder, out)} for c in cells]}


def same_study(saved, wanted):
    """'' if a study.json `saved` describes the study `wanted`, else what differs. The
    flagfiles' paths may differ (another machine on a shared folder); their effect is
    checked per cell (check_cell_config)."""
    for key, what in (("recipes", "recipes"), ("seeds", "seeds"),
                      ("train_args", "flags for gan.train"), ("num_samples", "--num_samples")):
        old, new = saved.get(key), wanted.get(key)
        if key == "train_args":  # where the data is may differ from machine to machine
            old, new = _bound_args(old or []), _bound_args(new)
        if key == "recipes":
            old, new = [r["name"] for r in old or []], [r["name"] for r in new]
        if old != new:
            return f"its {what} are {old}, here {new}"
    return ""


def _bound_args(args):
    """gan.train arguments less those of FREE_FIELDS (`--data_dir=...`)."""
    return [a for a in args if a.lstrip("-").split("=", 1)[0] not in FREE_FIELDS]


def setting(config, name):
    """A TrainConfig field's value in a config dict; a field it lacks (a record made before
    the field existed) is at its default."""
    from gan import config as config_lib  # no TensorFlow

    if name in config:
        return config[name]
    return next((f.default for f in dataclasses.fields(config_lib.TrainConfig)
                 if f.name == name), None)


def differing_fields(saved, wanted):
    """Names of the TrainConfig fields (not FREE_FIELDS) that differ between two configs,
    each read by setting()."""
    return sorted(k for k in set(saved) | set(wanted)
                  if k not in FREE_FIELDS and setting(saved, k) != setting(wanted, k))


def read_json(path):
    """The JSON object in `path`, or None if it is missing or unreadable."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def portable(value):
    """`value` with every absolute path in it made relative to the current folder, so that a
    committed study.json or cell.json names no folder of one machine (a study run from the
    repository: experiments/..., and the cells' folders under --out as given)."""
    if isinstance(value, dict):
        return {k: portable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [portable(v) for v in value]
    if isinstance(value, str) and os.path.isabs(value):
        return os.path.relpath(value)
    return value


def write_json(path, value):
    from gan import files

    files.write_bytes(path, (json.dumps(portable(value), indent=1) + "\n").encode(),
                      what=path)


def check_cell_config(cell):
    """Refuses a cell whose folder holds a run of another config (a recipe edited since, or
    other flags): its checkpoints would be resumed by other settings."""
    for file in (CELL_FILE, STATE_FILE):
        saved = read_json(cell.path(file))
        if saved and "config" in saved:
            changed = differing_fields(saved["config"], cell.config)
            if changed:
                raise StudyError(
                    f"cell {cell.index} ({cell.name}) in {cell.folder} was trained with other "
                    "settings: " + ", ".join(f"--{k}={setting(saved['config'], k)} there, "
                                             f"{setting(cell.config, k)} here" for k in changed)
                    + ". Use another --out, or the flags it was started with.")
            return


# --- locks ---------------------------------------------------------------------------------


def in_use_message(folder, pid):
    who = f"process {pid}" if pid is not None else "another process"
    return (f"--out={folder} is in use by another study: {who} holds its lock "
            f"{os.path.join(folder, '.lock')}. One study runs in a folder at a time (its cells "
            "may run side by side only with --cell); wait for it to end, or use another "
            "--out. Nothing was changed.")


@contextlib.contextmanager
def study_lock(folder, shared):
    """The study folder's lock, <out>/.lock (gan.training.runlock's file): exclusive for a whole
    study, shared for a --cell run, so that cells of one study run side by side but never beside
    a whole study on the same folder. Raises StudyError if it is taken."""
    from gan.training import runlock

    if not shared:
        try:
            with runlock.hold(folder):
                yield
        except runlock.FolderInUseError as e:
            raise StudyError(in_use_message(folder, e.pid)) from None
        return
    import fcntl

    path = os.path.join(folder, runlock.LOCK_FILE)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise StudyError(in_use_message(folder, runlock.holder_pid(path))) from None
            print(f"WARNING: cannot lock {path} ({e.strerror}); running without the lock.")
        yield
    finally:
        os.close(fd)


def cell_lock(cell):
    """The cell folder's own lock (gan.training.runlock): one process runs a cell at a time."""
    from gan.training import runlock

    os.makedirs(cell.folder, exist_ok=True)
    return runlock.hold(cell.folder)


# --- running cells -------------------------------------------------------------------------


def thread_env(threads):
    """The environment of a cell's processes: TensorFlow's thread pools (read at its
    start-up) and OpenMP's sized `threads`."""
    return dict(os.environ, **{name: str(threads) for name in THREAD_VARIABLES})


def command_line(args, threads):
    """The shell command a cell ran (for its record): the thread variables, then argv, each
    --flag=/absolute/path relative to the study's working folder, so that a committed
    record names no path of one machine (run from the repository: experiments/..., and
    the --out folder as given)."""
    def portable(arg):
        name, equals, value = arg.partition("=")
        if equals and name.startswith("--") and os.path.isabs(value):
            return f"{name}={os.path.relpath(value)}"
        return arg

    return " ".join([f"{name}={threads}" for name in THREAD_VARIABLES]
                    + [shlex.quote(portable(a)) for a in ["python", *args[1:]]])


def _child_setup():
    """In a child before exec: its own process group (a Ctrl-C on the terminal reaches the
    study alone, which passes one signal on: two would stop gan.train without its
    checkpoint); on Linux, death when the study dies, also by kill -9, so that no orphaned
    training holds the cell's folder when the study is run again."""
    os.setpgid(0, 0)
    if sys.platform != "linux":
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the study died before prctl
        os._exit(1)


def start(args, log_path, threads, append):
    """Starts `args` (a child process, see _child_setup) with `threads`, its output into
    log_path."""
    with open(log_path, "a" if append else "w") as log:
        return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                env=thread_env(threads), preexec_fn=_child_setup)


def format_duration(seconds):
    """`H:MM:SS`, or `M:SS` under an hour (as gan.training.monitor's)."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def evaluate_args(folder, num_samples, config):
    """The gan.evaluate command of the cell in `folder` (trained with TrainConfig `config`, a
    dict): its newest checkpoint judged, the JSON written to its evaluate.json."""
    args = [sys.executable, "-m", "gan.evaluate",
            f"--checkpoint_dir={os.path.join(folder, 'checkpoints')}",
            f"--json_out={os.path.join(folder, EVAL_FILE)}"]
    if num_samples:
        args.append(f"--num_samples={num_samples}")
    if config.get("data_dir"):
        args.append(f"--data_dir={config['data_dir']}")
    return args


class Job:
    """A cell being run: training (resumed if its folder has checkpoints), then evaluation,
    then its record. `poll` advances it; `done` when finished or failed."""

    def __init__(self, cell, threads, num_samples, total):
        self.cell, self.threads, self.num_samples, self.total = cell, threads, num_samples, total
        self.locks = contextlib.ExitStack()
        self.locks.enter_context(cell_lock(cell))
        state = read_json(cell.path(STATE_FILE)) or {}
        self.train_seconds = state.get("train_seconds", 0.0)
        self.attempts = state.get("attempts", 0) + 1
        self.step, self.rate = None, None
        self.failed, self.done, self.exit_code = None, False, 0
        self.log_offset = 0
        self._start_training()

    @property
    def label(self):
        return f"[cell {self.cell.index + 1}/{self.total} {self.cell.name}]"

    def _save_state(self, now):
        write_json(self.cell.path(STATE_FILE), {
            "recipe": self.cell.recipe, "seed": self.cell.seed, "config": self.cell.config,
            "threads": self.threads, "attempts": self.attempts,
            "train_seconds": self.train_seconds + (now - self.started)})

    def _start_training(self):
        self.phase = "train"
        self.args = [sys.executable, "-m", "gan.train", *self.cell.train_args]
        log = self.cell.path("train.log")
        self.log_offset = os.path.getsize(log) if os.path.exists(log) else 0
        self.started = time.time()
        self._save_state(self.started)
        self.process = start(self.args, log, self.threads, append=True)
        print(f"{self.label} training with {self.threads} thread(s); log: {log}", flush=True)

    def _start_evaluation(self):
        self.phase = "evaluate"
        args = evaluate_args(self.cell.folder, self.num_samples, self.cell.config)
        self.eval_args = args
        self.eval_started = time.time()
        self.process = start(args, self.cell.path("evaluate.log"), self.threads, append=False)
        print(f"{self.label} evaluating", flush=True)

    def progress(self):
        """New progress lines of the cell's training since the last call: (step, total, it/s)
        of the newest, or None."""
        if self.phase != "train":
            return None
        try:
            with open(self.cell.path("train.log"), "rb") as f:
                f.seek(self.log_offset)
                data = f.read()
        except OSError:
            return None
        end = data.rfind(b"\n") + 1  # whole lines only: the rest is still being written
        self.log_offset += end
        newest = None
        for line in data[:end].decode(errors="replace").splitlines():
            match = PROGRESS.match(line)
            if match:
                newest = (int(match[1]), int(match[2]), match[3] and float(match[3]))
        if newest:
            self.step, _, rate = newest
            self.rate = rate or self.rate
            self._save_state(time.time())
        return newest

    def poll(self):
        """Advances the job if its process ended."""
        code = self.process.poll()
        if code is None:
            return
        now = time.time()
        if self.phase == "train":
            self._save_state(now)
            self.train_seconds += now - self.started
            if code == 0:
                self._start_evaluation()
                return
            self._finish(code, "train.log")
        elif code == 0:
            self.eval_seconds = now - self.eval_started
            self._write_record()
            self._finish(0, None)
        else:
            self._finish(code, "evaluate.log")

    def _finish(self, code, log):
        self.done, self.exit_code = True, code
        self.locks.close()
        if code:
            self.failed = log
            tail = _tail(self.cell.path(log))
            if code in (130, 143):
                print(f"{self.label} stopped ({signal.Signals(code - 128).name}); the same "
                      "command resumes it", flush=True)
            else:
                print(f"{self.label} FAILED (exit {code}); {self.cell.path(log)} ends:\n{tail}",
                      flush=True)

    def _write_record(self):
        evaluation = read_json(self.cell.path(EVAL_FILE))
        record = {
            "index": self.cell.index, "recipe": self.cell.recipe, "seed": self.cell.seed,
            "dataset": evaluation.get("dataset"), "iterations": evaluation.get("step"),
            "batch_size": self.cell.config["batch_size"], "threads": self.threads,
            "train_seconds": round(self.train_seconds, 1),
            "eval_seconds": round(self.eval_seconds, 1), "attempts": self.attempts,
            "train_command": command_line(self.args, self.threads),
            "evaluate_command": command_line(self.eval_args, self.threads),
            "config": self.cell.config, "evaluation": evaluation,
            "machine": machine.record(),
        }
        write_json(self.cell.path(CELL_FILE), record)
        figures = cell_figures(record)
        print(f"{self.label} done: {format_duration(self.train_seconds)} training, "
              + "  ".join(f"{k}={FIGURES.get(k, (0, '{:g}'))[1].format(v)}"
                          for k, v in figures.items()), flush=True)

    def stop(self, signum):
        """Passes a stop signal on to the running process (gan.train saves a checkpoint)."""
        if self.process.poll() is None:
            self.process.send_signal(signum)

    def remaining_seconds(self, estimate):
        """Seconds this job still needs, by `estimate` (Estimate)."""
        if self.phase == "evaluate":
            return max(0.0, estimate.eval_seconds() - (time.time() - self.eval_started))
        epochs = self.cell.config["epochs"]
        if self.rate:
            return (epochs - (self.step or 0)) / self.rate + estimate.eval_seconds()
        return estimate.cell_seconds(self.cell, time.time() - self.started)


def _tail(path, lines=15):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:]).rstrip()
    except OSError:
        return "(no log)"


class Estimate:
    """Time estimates from what the study has seen: seconds per iteration of each recipe
    (from finished cells' records, else running cells' it/s) and evaluation seconds."""

    def __init__(self):
        # recipe -> seconds per iteration: of whole finished cells (start-up included), or
        # else the newest it/s a running cell printed
        self.finished, self.running, self.evals = {}, {}, []

    def add_record(self, record):
        if record.get("iterations"):
            self.finished[record["recipe"]] = record["train_seconds"] / record["iterations"]
        self.evals.append(record.get("eval_seconds", 0.0))

    def add_rate(self, recipe, rate):
        if rate:
            self.running[recipe] = 1.0 / rate

    def seconds_per_iteration(self, recipe):
        """The recipe's own, else the mean of the other recipes' (None if none is known)."""
        known = self.finished.get(recipe) or self.running.get(recipe)
        if known:
            return known
        values = list({**self.running, **self.finished}.values())
        return sum(values) / len(values) if values else None

    def eval_seconds(self):
        return sum(self.evals) / len(self.evals) if self.evals else 0.0

    def cell_seconds(self, cell, elapsed=0.0):
        per = self.seconds_per_iteration(cell.recipe)
        if per is None:
            return float("nan")
        return max(0.0, per * cell.config["epochs"] - elapsed) + self.eval_seconds()


def run_cells(cells, total, parallel, threads, num_samples):
    """Runs `cells` (unfinished ones of a study of `total` cells), `parallel` at a time, each
    with `threads` threads. Returns the exit code: 0, 1 if a cell failed, 128 + signal if
    stopped."""
    from gan.training import runlock

    estimate = Estimate()
    for cell in cells:
        record = read_json(cell.path(CELL_FILE))
        if record:
            estimate.add_record(record)
    pending = [c for c in cells if not os.path.exists(c.path(CELL_FILE))]
    skipped = len(cells) - len(pending)
    if skipped:
        print(f"{skipped} of {len(cells)} cells already finished; skipped.", flush=True)
    stop, forwarded = [], False
    previous = {s: signal.signal(s, lambda signum, _: stop.append(signum))
                for s in (signal.SIGINT, signal.SIGTERM)}
    running, failed = [], []
    try:
        while pending or running:
            if stop and not forwarded:  # once: a second signal would stop gan.train unsaved
                for job in running:
                    job.stop(stop[0])
                forwarded, pending = True, []
            while pending and len(running) < parallel and not stop:
                cell = pending.pop(0)
                try:
                    running.append(Job(cell, threads, num_samples, total))
                except runlock.FolderInUseError as e:  # run by a --cell process of this study
                    print(f"[cell {cell.index + 1}/{total} {cell.name}] skipped: {e}", flush=True)
                    failed.append(cell)
            for job in list(running):
                newest = job.progress()
                if newest:
                    estimate.add_rate(job.cell.recipe, job.rate)
                    report(job, newest, running, pending, estimate, parallel)
                job.poll()
                if job.done:
                    running.remove(job)
                    if job.failed:
                        failed.append(job)
                    else:
                        estimate.add_record(read_json(job.cell.path(CELL_FILE)))
            time.sleep(0.2)
    finally:
        for job in running:  # an exception here: leave no child behind
            job.stop(signal.SIGTERM)
            job.process.wait()
        for s, handler in previous.items():
            signal.signal(s, handler)
    if stop:
        return 128 + int(stop[0])
    return 1 if failed else 0


def report(job, newest, running, pending, estimate, parallel):
    """A progress line: the cell's epoch, its rate and ETA, and the study's ETA (the
    seconds left of every unfinished cell, shared by the cells run at once)."""
    step, epochs, rate = newest
    cell_left = job.remaining_seconds(estimate)
    left = sum(j.remaining_seconds(estimate) for j in running) + sum(
        estimate.cell_seconds(c) for c in pending)
    print(f"{job.label} epoch {step}/{epochs}"
          + (f"  {rate:.0f} it/s" if rate else "")
          + f"  cell eta {format_duration(cell_left)}"
          + f"  study eta {format_duration(left / max(1, min(parallel, len(running))))}",
          flush=True)


# --- results ---------------------------------------------------------------------------------


def cell_figures(record):
    """{figure: value} of a finished cell: every number the evaluator reports (not the sample
    count), and for a generator asked for classes the accuracy of its worst class."""
    generated = record["evaluation"]["generated"]
    figures = {k: v for k, v in generated.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in NOT_FIGURES}
    worst = worst_class(generated)
    if worst:
        figures["worst_class_accuracy"] = worst[1]
    margin = class_margin(generated, record["evaluation"]["real_floor"])
    if margin:
        figures["class_margin"] = margin[1]
    return figures


def class_margin(generated, floor):
    """(class, margin) of the class drawn as asked furthest below the classifier's own
    accuracy on real test images of it (margin = the fraction drawn as asked minus that
    accuracy: >= 0 for every class means the generator is as legible as real images), or None
    without both per-class accuracies (an evaluation from before the floor had them)."""
    drawn, right = generated.get("label_accuracy"), floor.get("label_accuracy")
    if not drawn or not right:
        return None
    known = [(a - r, d) for d, (a, r) in enumerate(zip(drawn, right))
             if a is not None and r is not None and math.isfinite(a) and math.isfinite(r)]
    if not known:
        return None
    margin, d = min(known)
    return d, margin


def worst_class(generated):
    """(class, accuracy) of the class drawn as asked least often, or None if the evaluator
    gave no per-class accuracy (an unconditional or cluster-conditioned generator)."""
    accuracy = generated.get("label_accuracy")
    if not accuracy:
        return None
    known = [(a, d) for d, a in enumerate(accuracy) if a is not None and math.isfinite(a)]
    if not known:
        return None
    a, d = min(known)
    return d, a


def summarize(values, better):
    """mean, sample standard deviation (n - 1; None for one seed), and the worst value and
    its index, of `values` (one per seed)."""
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    worst = None
    if better in ("lower", "higher"):
        pick = max if better == "lower" else min
        worst = pick(range(n), key=lambda i: values[i])
    return mean, std, worst


def collect(out):
    """Builds the results from the finished cells listed in <out>/study.json: the results
    object (as results.json holds it)."""
    study = read_json(os.path.join(out, STUDY_FILE))
    if study is None:
        raise StudyError(f"--out={out} holds no {STUDY_FILE}: no study was started there")
    cells, missing = [], []
    for entry in study["cells"]:
        record = read_json(os.path.join(out, entry["folder"], CELL_FILE))
        if record is None:
            missing.append({k: entry[k] for k in ("index", "recipe", "seed")})
            continue
        generated = record["evaluation"]["generated"]
        row = {k: record[k] for k in ("index", "recipe", "seed", "dataset", "iterations",
                                      "batch_size", "threads", "train_seconds", "eval_seconds",
                                      "train_command")}
        row["machine"] = record.get("machine")
        row["figures"] = cell_figures(record)
        row["real_floor"] = {k: v for k, v in record["evaluation"]["real_floor"].items()
                             if k in row["figures"]}
        row["num_samples"] = generated.get("num_samples")
        worst = worst_class(generated)
        if worst:
            row["worst_class"], row["worst_class_accuracy"] = worst
            row["label_accuracy"] = generated["label_accuracy"]
        floor = record["evaluation"]["real_floor"]
        margin = class_margin(generated, floor)
        if margin:
            row["margin_class"], row["class_margin"] = margin
            row["classifier_accuracy"] = floor["label_accuracy"]
        cells.append(row)
    recipes = []
    for recipe in [r["name"] for r in study["recipes"]]:
        rows = [c for c in cells if c["recipe"] == recipe]
        entry = {"recipe": recipe, "seeds": [c["seed"] for c in rows],
                 "missing_seeds": [m["seed"] for m in missing if m["recipe"] == recipe],
                 "figures": {}}
        names = [k for k in dict.fromkeys(k for c in rows for k in c["figures"])
                 if all(k in c["figures"] for c in rows)]
        for name in names:
            values = [c["figures"][name] for c in rows]
            better = FIGURES.get(name, (None,))[0]
            mean, std, worst = summarize(values, better)
            entry["figures"][name] = {
                "mean": mean, "std": std, "better": better,
                "worst": None if worst is None else values[worst],
                "worst_seed": None if worst is None else rows[worst]["seed"],
                "real": rows[0]["real_floor"].get(name), "values": values}
        recipes.append(entry)
    return {"seeds": study["seeds"], "train_args": study["train_args"],
            "num_samples": study["num_samples"], "cells": cells, "recipes": recipes,
            "missing": missing, "complete": not missing}


def _fmt(name, value):
    if value is None:
        return "-"
    return FIGURES.get(name, (None, "{:.4g}"))[1].format(value)


def markdown(results, command):
    """results.md: per recipe mean, std, worst seed and the real value of each figure; each
    cell's figures and costs; each conditional seed's worst class; the missing cells."""
    lines = ["# Study results", ""]
    n_all = len(results["cells"]) + len(results["missing"])
    lines.append(f"{len(results['cells'])} of {n_all} cells finished. Each cell: "
                 "`gan.train` from the recipe with `--seed`, then `gan.evaluate`"
                 + (f" on {results['num_samples']} samples" if results["num_samples"] else "")
                 + (f"; flags for every cell: `{' '.join(results['train_args'])}`"
                    if results["train_args"] else "") + ".")
    lines += ["", "Standard deviations are over seeds (n - 1). Worst: the seed whose figure is "
              "worst in the direction it is better.", ""]
    for entry in results["recipes"]:
        lines.append(f"## {entry['recipe']}: seeds {', '.join(map(str, entry['seeds'])) or '-'}"
                     + (f" (missing: {', '.join(map(str, entry['missing_seeds']))})"
                        if entry["missing_seeds"] else ""))
        lines += ["", "| figure | better | mean | std | worst (seed) | real data |",
                  "|---|---|---|---|---|---|"]
        for name, f in entry["figures"].items():
            worst = "-" if f["worst"] is None else f"{_fmt(name, f['worst'])} ({f['worst_seed']})"
            lines.append(f"| {name} | {f['better'] or '-'} | {_fmt(name, f['mean'])} | "
                         f"{_fmt(name, f['std'])} | {worst} | {_fmt(name, f['real'])} |")
        lines.append("")
    if results["cells"]:
        names = list(dict.fromkeys(k for c in results["cells"] for k in c["figures"]))
        lines += ["## Cells", "", "| cell | recipe | seed | " + " | ".join(names)
                  + " | iterations | batch | train minutes | threads |",
                  "|" + "---|" * (len(names) + 7)]
        for c in results["cells"]:
            lines.append(f"| {c['index']} | {c['recipe']} | {c['seed']} | "
                         + " | ".join(_fmt(k, c["figures"].get(k)) for k in names)
                         + f" | {c['iterations']} | {c['batch_size']} | "
                         f"{c['train_seconds'] / 60:.1f} | {c['threads']} |")
        lines.append("")
    conditional = [c for c in results["cells"] if "worst_class" in c]
    if conditional:
        lines += ["## Worst class of each conditional seed", "",
                  "The class drawn as asked least often, and the class furthest below the "
                  "classifier's own accuracy on real test images of it (margin: drawn as "
                  "asked minus that accuracy, in points; >= 0 for every class: as legible as "
                  "real images).", "",
                  "| recipe | seed | worst class | drawn as asked | furthest below the "
                  "classifier | margin |", "|---|---|---|---|---|---|"]
        lines += [f"| {c['recipe']} | {c['seed']} | {c['worst_class']} | "
                  f"{100 * c['worst_class_accuracy']:.1f}% | {c.get('margin_class', '-')} | "
                  + (f"{100 * c['class_margin']:+.1f} |" if "class_margin" in c else "- |")
                  for c in conditional]
        lines.append("")
    if results["missing"]:
        lines += ["## Missing cells", ""]
        lines += [f"- cell {m['index']}: {m['recipe']} seed {m['seed']} (`{command} "
                  f"--cell={m['index']}`)" for m in results["missing"]]
        lines.append("")
    return "\n".join(lines)


def plot(results, path):
    """results.png: one panel per figure; per recipe one point per seed, the mean as a black
    bar, the real data's value as a dashed line over the recipe's place."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(dict.fromkeys(k for e in results["recipes"] for k in e["figures"]))
    cols = min(4, max(1, len(names)))
    rows = max(1, math.ceil(len(names) / cols))
    recipes = [e["recipe"] for e in results["recipes"]]
    figure = Figure(figsize=(3.2 * cols, 2.8 * rows), layout="constrained")
    FigureCanvasAgg(figure)
    for i, name in enumerate(names):
        axes = figure.add_subplot(rows, cols, i + 1)
        for x, entry in enumerate(results["recipes"]):
            f = entry["figures"].get(name)
            if f is None:
                continue
            n = len(f["values"])
            xs = [x + 0.25 * (j - (n - 1) / 2) / max(1, n - 1) for j in range(n)]
            axes.scatter(xs, f["values"], s=18, color="tab:blue", zorder=3,
                         label="seed" if x == 0 else None)
            axes.hlines(f["mean"], x - 0.25, x + 0.25, color="black", lw=2, zorder=4,
                        label="mean" if x == 0 else None)
            if f["real"] is not None:
                axes.hlines(f["real"], x - 0.4, x + 0.4, color="tab:green", ls="--", zorder=2,
                            label="real data" if x == 0 else None)
        better = FIGURES.get(name, (None,))[0]
        axes.set_title(name + (f" ({better} is better)" if better else ""), fontsize=9)
        axes.set_xticks(range(len(recipes)), recipes, fontsize=7, rotation=15)
        axes.set_xlim(-0.6, len(recipes) - 0.4)
        axes.tick_params(axis="y", labelsize=7)
        if i == 0:
            axes.legend(fontsize=6)
    from gan import files

    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    files.write_bytes(path, buffer.getvalue(), what="the study's plot")


def write_results(out, command):
    """Writes results.json, results.md and results.png in `out`; returns the results."""
    results = collect(out)
    write_json(os.path.join(out, "results.json"), results)
    text = markdown(results, command)
    from gan import files

    files.write_bytes(os.path.join(out, "results.md"), text.encode(), what="results.md")
    plot(results, os.path.join(out, "results.png"))
    return results, text


# --- the command -----------------------------------------------------------------------------


def base_command(out):
    """The study's command for one cell, as results.md names it (flags of gan.train included)."""
    study = read_json(os.path.join(out, STUDY_FILE)) or {}
    parts = ["python -m gan.study",
             "--recipes=" + ",".join(r["given"] for r in study.get("recipes", [])),
             "--seeds=" + ",".join(map(str, study.get("seeds", []))),
             f"--out={portable(out)}"]  # relative: results.md is committed
    if study.get("num_samples"):
        parts.append(f"--num_samples={study['num_samples']}")
    return " ".join(parts + [shlex.quote(a) for a in study.get("train_args", [])])


def print_results(out, results, text):
    print(f"Wrote {os.path.join(out, 'results.json')}, results.md and results.png:")
    print(text)
    if results["missing"]:
        print("Missing: " + ", ".join(f"cell {m['index']} ({m['recipe']} seed {m['seed']})"
                                      for m in results["missing"]))


def main(argv):
    if len(argv) > 1:
        cli.fail(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        if not FLAGS.out:
            raise StudyError("--out is required: the study's folder")
        out = os.path.abspath(FLAGS.out)
        if FLAGS.collect or FLAGS.reevaluate:
            given = "--collect" if FLAGS.collect else "--reevaluate"
            if FLAGS.collect and FLAGS.reevaluate:
                raise StudyError("--collect and --reevaluate: give one (--reevaluate also "
                                 "collects)")
            if TRAIN_ARGS or FLAGS.recipes or FLAGS.cell is not None:
                raise StudyError(f"{given} needs only --out (it reads the study's own "
                                 "definition there)")
            code = reevaluate(out) if FLAGS.reevaluate else 0
            results, text = write_results(out, base_command(out))
            print_results(out, results, text)
            sys.exit(code)
        code = run_study(out)
    except StudyError as e:
        cli.fail(e)
    sys.exit(code)


def reevaluate(out):
    """Judges each finished cell of the study in `out` again: its gan.evaluate command, run
    as the study ran it (threads included), replaces the evaluation in its cell.json; the
    training part of the record stays. Holds the study's lock, as a study run does. Returns 1
    if a cell could not be judged (its checkpoints are not here, or gan.evaluate failed: named,
    and its record left as it was), else 0."""
    study = read_json(os.path.join(out, STUDY_FILE))
    if study is None:
        raise StudyError(f"--out={out} holds no {STUDY_FILE}: no study was started there")
    failed = 0
    with study_lock(out, shared=False):
        records = [(e, read_json(os.path.join(out, e["folder"], CELL_FILE)))
                   for e in study["cells"]]
        finished = [(e, r) for e, r in records if r is not None]
        print(f"Judging {len(finished)} finished cell(s) of {len(records)} again.", flush=True)
        for n, (entry, record) in enumerate(finished, 1):
            folder = os.path.join(out, entry["folder"])
            label = f"[{n}/{len(finished)} {entry['recipe']} seed {entry['seed']}]"
            steps = [int(m[1]) for m in (re.search(r"ckpt-(\d+)\.index$", p) for p in
                     glob.glob(os.path.join(folder, "checkpoints", "ckpt-*.index"))) if m]
            if max(steps, default=None) != record["iterations"]:
                print(f"{label} skipped: {os.path.join(folder, 'checkpoints')} holds no "
                      f"checkpoint of its last step, {record['iterations']} (the run is on "
                      "another machine?); its record is unchanged", flush=True)
                failed = 1
                continue
            args = evaluate_args(folder, study.get("num_samples"), record["config"])
            started = time.time()
            code = start(args, os.path.join(folder, "evaluate.log"), record["threads"],
                         append=False).wait()
            if code:
                print(f"{label} FAILED (exit {code}); {os.path.join(folder, 'evaluate.log')} "
                      f"ends:\n{_tail(os.path.join(folder, 'evaluate.log'))}", flush=True)
                failed = 1
                continue
            record.update(evaluation=read_json(os.path.join(folder, EVAL_FILE)),
                          eval_seconds=round(time.time() - started, 1),
                          evaluate_command=command_line(args, record["threads"]))
            write_json(os.path.join(folder, CELL_FILE), record)
            print(f"{label} judged again in {format_duration(time.time() - started)}",
                  flush=True)
    return failed


def run_study(out):
    """Checks everything, then runs the study's cells (or --cell's); returns the exit code."""
    if not FLAGS.recipes:
        raise StudyError("--recipes is required: names of experiments/*.flags or flagfiles")
    if FLAGS.parallel < 1:
        raise StudyError(f"--parallel must be positive, got {FLAGS.parallel}")
    if FLAGS.threads < 0:
        raise StudyError(f"--threads must be 0 (all CPUs) or positive, got {FLAGS.threads}")
    if FLAGS.num_samples is not None and FLAGS.num_samples < 10:
        raise StudyError(f"--num_samples must be at least 10, got {FLAGS.num_samples}")
    seeds = parse_seeds(FLAGS.seeds)
    recipes = [resolve_recipe(r) for r in FLAGS.recipes]
    names = [n for n, _ in recipes]
    if len(set(names)) != len(names):
        raise StudyError(f"--recipes names a recipe twice: {','.join(names)}")
    check_train_args(TRAIN_ARGS)
    cells = make_cells(out, recipes, seeds, list(TRAIN_ARGS))
    if FLAGS.cell is not None and not 0 <= FLAGS.cell < len(cells):
        raise StudyError(f"--cell must be in 0..{len(cells) - 1} ({len(recipes)} recipes x "
                         f"{len(seeds)} seeds), got {FLAGS.cell}")
    parse_configs(cells)
    wanted = definition(out, cells, recipes, seeds, list(TRAIN_ARGS), FLAGS.num_samples)
    if os.path.exists(out) and not os.path.isdir(out):
        raise StudyError(f"--out={out} is not a folder")
    total_threads = FLAGS.threads or len(os.sched_getaffinity(0))
    parallel = 1 if FLAGS.cell is not None else FLAGS.parallel
    threads = max(1, total_threads // parallel)
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        raise StudyError(f"--out={out} cannot be created: {e.strerror}") from None
    with contextlib.ExitStack() as stack:
        stack.enter_context(study_lock(out, shared=FLAGS.cell is not None))
        saved = read_json(os.path.join(out, STUDY_FILE))
        if saved is not None:
            differs = same_study(saved, wanted)
            if differs:
                raise StudyError(f"--out={out} holds another study ({differs}); use another "
                                 "--out, or that study's command")
        chosen = cells if FLAGS.cell is None else [cells[FLAGS.cell]]
        for cell in chosen:
            check_cell_config(cell)
        if FLAGS.cell is not None:  # another task of the array on the same cell: refused
            from gan.training import runlock

            try:
                stack.enter_context(cell_lock(chosen[0]))
            except runlock.FolderInUseError as e:
                raise StudyError(f"cell {FLAGS.cell} ({chosen[0].name}) is being run by "
                                 f"process {e.pid}: its folder {chosen[0].folder} is "
                                 "locked. Nothing was changed.") from None
        if saved is None:
            write_json(os.path.join(out, STUDY_FILE), wanted)
        print(f"Study in {out}: {len(recipes)} recipe(s) x {len(seeds)} seed(s) = "
              f"{len(cells)} cells" + (f"; this process runs cell {FLAGS.cell}"
                                       if FLAGS.cell is not None else
                                       f", {parallel} at a time") +
              f", {threads} thread(s) each.", flush=True)
        code = run_cells(chosen, len(cells), parallel, threads, FLAGS.num_samples)
        if code in (130, 143):
            print(f"Stopped by {signal.Signals(code - 128).name}; run the same command again "
                  "to resume.", file=sys.stderr)
            return code
        if FLAGS.cell is None:
            results, text = write_results(out, base_command(out))
            print_results(out, results, text)
        else:
            print(f"Cell {FLAGS.cell} " + ("done" if code == 0 else "failed") + "; "
                  f"`python -m gan.study --collect --out={out}` builds the tables.")
        return code


def run():
    """Console entry point `gan-study`, the same as `python -m gan.study`."""
    from absl import app

    app.define_help_flags()  # app.run defines them later: --help must count as the study's
    sys.argv, TRAIN_ARGS[:] = split_argv(sys.argv)
    cli.run(main, __name__)


if __name__ == "__main__":
    run()
