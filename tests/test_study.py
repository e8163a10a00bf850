"""`python -m gan.study`: a tiny study (2 recipes x 2 seeds, 600 iterations, 100 evaluation
samples, on the mock data) killed with -9 mid-cell and resumed, a second study refused while
it runs, its tables checked against the cells' own evaluator figures, a cell checked bit for
bit against the same gan.train command, and --cell plus --collect with missing cells."""

import json
import os
import platform
import re
import shlex
import shutil
import time

import numpy as np
import pytest

from conftest import REPO, checkpoint_tensors, run_cli, start_cli, wait_for_file

# One xdist worker runs the whole file (setup.cfg: --dist loadgroup), so its module fixture, a
# study killed and resumed (~1 min), is made once, not once per worker.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("study")]

EPOCHS = 600  # given to the study after its own flags: overrides the recipes' 2000
# A recipe as experiments/*.flags are written, made small: no XLA (faster start-up for 600
# steps), checkpoints every 100 (a kill lands between two), progress lines often (the
# study's ETA), and its own --checkpoint_dir, which the study must replace per cell.
RECIPE = """# a test recipe
--epochs=2000
--noxla
--checkpoint_every=100
--save_every=100
--steps_per_call=20
--log_every_secs=0.2
--checkpoint_dir=runs/{name}/checkpoints
--image_dir=runs/{name}/images
"""
SEEDS = (0, 1)


@pytest.fixture(scope="module")
def recipes(tmp_path_factory):
    """{name: flagfile}: an unconditional and a class-conditional recipe."""
    folder = tmp_path_factory.mktemp("recipes")
    paths = {}
    for name, extra in (("plain", ""), ("cond", "--conditional\n")):
        paths[name] = folder / f"{name}.flags"
        paths[name].write_text(RECIPE.format(name=name) + extra)
    return paths


def study_args(out, recipes, data_dir):
    """The study's own flags, then gan.train's for every cell: 2 cells at once, 1 thread
    each."""
    return [f"--recipes={recipes['plain']},{recipes['cond']}", "--seeds=0,1", f"--out={out}",
            "--num_samples=100", "--parallel=2", "--threads=2",
            f"--data_dir={data_dir}", f"--epochs={EPOCHS}"]


def cell_dir(out, recipe, seed):
    return os.path.join(out, recipe, f"seed{seed}")


def wait_for_checkpoint(folder, process, timeout=300):
    """Waits until `folder` holds a complete checkpoint: TensorFlow writes the `checkpoint`
    state file after a checkpoint's own files. (A kill during a run's very first save leaves
    no usable checkpoint, and gan.train then refuses to start over it: not this test's
    subject.) Fails if `process` exits first."""
    deadline = time.time() + timeout
    while not os.path.exists(os.path.join(folder, "checkpoint")):
        assert process.poll() is None, f"exited with {process.returncode} before a checkpoint"
        assert time.time() < deadline, f"no checkpoint in {folder} within {timeout}s"
        time.sleep(0.01)


def lock_holder(folder):
    from gan.training import runlock

    return runlock.holder_pid(os.path.join(folder, ".lock"))


@pytest.fixture(scope="module")
def killed_study(tmp_path_factory, recipes, data_dir):
    """Runs the study, refuses a second study and a --cell run on its folder while it
    trains, kills it with -9 while its first two cells train (each past a checkpoint), then
    reruns the same command to the end. Returns what each step gave."""
    tmp = tmp_path_factory.mktemp("study")
    out = str(tmp / "out")
    args = study_args(out, recipes, data_dir)
    first = start_cli("gan.study", *args, log_path=tmp / "first.log")
    try:
        # The study writes study.json once it holds its folder's lock.
        wait_for_file(os.path.join(out, "study.json"), first)
        started = time.time()
        second = run_cli("gan.study", *args)
        second_seconds = time.time() - started
        one_cell = run_cli("gan.study", *args, "--cell=0")
        for seed in SEEDS:  # cells 0 and 1 run at once (--parallel=2)
            wait_for_checkpoint(os.path.join(cell_dir(out, "plain", seed), "checkpoints"),
                                first)
        assert first.poll() is None, "the study ended before the kill"
        unfinished = [not os.path.exists(os.path.join(cell_dir(out, "plain", s), "checkpoints",
                                                      f"ckpt-{EPOCHS}.index")) for s in SEEDS]
        first.kill()
        assert first.wait(timeout=60) == -9
    finally:
        if first.poll() is None:
            first.kill()
    # Its gan.train children die with it (else they would hold the cells' folders).
    deadline = time.time() + 30
    orphans = [cell_dir(out, "plain", s) + "/checkpoints" for s in SEEDS]
    while any(lock_holder(f) for f in orphans) and time.time() < deadline:
        time.sleep(0.1)
    orphaned = [f for f in orphans if lock_holder(f)]
    resumed = run_cli("gan.study", *args)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    return dict(out=out, args=args, second=second, second_seconds=second_seconds,
                one_cell=one_cell, unfinished=unfinished, orphaned=orphaned, resumed=resumed,
                first_log=(tmp / "first.log").read_text())


def read(path):
    with open(path) as f:
        return json.load(f)


def test_a_second_study_or_a_cell_on_a_running_study_folder_is_refused(killed_study):
    out = killed_study["out"]
    for result in (killed_study["second"], killed_study["one_cell"]):
        assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: --out={out} is in use by "
                                                       "another study: process "), lines
        assert "Nothing was changed" in lines[0]
        assert "Study in" not in result.stdout  # refused before starting anything
    assert killed_study["second_seconds"] < 30  # before any TensorFlow work


def test_a_study_killed_mid_cell_resumes_each_cell_from_its_checkpoint(killed_study):
    out = killed_study["out"]
    assert all(killed_study["unfinished"]), "the kill came after a cell had finished"
    assert killed_study["orphaned"] == []  # no gan.train outlived the killed study
    assert "[cell 1/4 plain seed 0] epoch" in killed_study["first_log"]  # progress lines
    assert "study eta" in killed_study["first_log"]
    for seed in SEEDS:
        log = open(os.path.join(cell_dir(out, "plain", seed), "train.log")).read()
        assert "Resuming from step" in log, log[-3000:]  # not again from step 0
        record = read(os.path.join(cell_dir(out, "plain", seed), "cell.json"))
        assert record["attempts"] == 2
    stdout = killed_study["resumed"].stdout
    assert "Wrote " in stdout and "4 of 4 cells finished" in stdout
    assert "Missing" not in stdout


def test_cells_record_the_flags_given_after_the_studys_own_and_the_threads(killed_study):
    out = killed_study["out"]
    for recipe in ("plain", "cond"):
        for seed in SEEDS:
            record = read(os.path.join(cell_dir(out, recipe, seed), "cell.json"))
            assert record["iterations"] == EPOCHS  # --epochs after the study's flags wins
            assert record["batch_size"] == 32 and record["threads"] == 1  # 2 threads / 2
            assert record["train_command"].startswith(
                "TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 OMP_NUM_THREADS=1 python -m "
                "gan.train --flagfile=")
            assert f"--seed={seed} " in record["train_command"]
            assert record["train_seconds"] > 0 and record["eval_seconds"] > 0
            # The machine, for the results page's header.
            assert record["machine"]["python"] == platform.python_version()
            assert record["machine"]["cpus"] >= 1 and record["machine"]["cpu"]
            assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", record["machine"]["date"])
            # No absolute path in it (config, evaluation, commands): a committed record
            # names no folder of one machine.
            text = open(os.path.join(cell_dir(out, recipe, seed), "cell.json")).read()
            assert not re.search(r'"/|=/', text), re.findall(r'"/[^"]*"|=/\S*', text)[:3]
            assert os.path.exists(os.path.join(cell_dir(out, recipe, seed), "checkpoints",
                                               f"ckpt-{EPOCHS}.index"))
    assert not os.path.exists(os.path.join(REPO, "runs", "plain"))  # the recipe's own folder unused


def own_figures(out, recipe, seed):
    """The figures of one cell, read from gan.evaluate's own JSON (not from the study's
    record): every judged number, and the worst class's accuracy of a conditional one."""
    evaluation = read(os.path.join(cell_dir(out, recipe, seed), "evaluate.json"))
    generated = evaluation["generated"]
    figures = {k: generated[k] for k in ("fd", "kid", "classifier_score", "modes_covered",
                                         "class_kl", "precision", "recall")}
    if "label_accuracy" in generated:
        figures["worst_class_accuracy"] = min(generated["label_accuracy"])
        # against the classifier's own accuracy on real test images of each class
        figures["class_margin"] = min(np.subtract(generated["label_accuracy"],
                                                  evaluation["real_floor"]["label_accuracy"]))
    return figures


def test_the_tables_mean_std_and_worst_seed_are_those_of_the_cells_own_figures(killed_study):
    out = killed_study["out"]
    results = read(os.path.join(out, "results.json"))
    assert results["complete"] and results["missing"] == []
    assert [(c["recipe"], c["seed"]) for c in results["cells"]] == [
        ("plain", 0), ("plain", 1), ("cond", 0), ("cond", 1)]
    markdown = open(os.path.join(out, "results.md")).read()
    for entry in results["recipes"]:
        recipe = entry["recipe"]
        cells = {seed: own_figures(out, recipe, seed) for seed in SEEDS}
        floor = read(os.path.join(cell_dir(out, recipe, 0), "evaluate.json"))["real_floor"]
        assert set(entry["figures"]) == set(cells[0])
        assert ("worst_class_accuracy" in entry["figures"]) == (recipe == "cond")
        assert ("class_margin" in entry["figures"]) == (recipe == "cond")
        for name, figure in entry["figures"].items():
            values = np.array([cells[seed][name] for seed in SEEDS], float)
            assert figure["mean"] == pytest.approx(values.mean(), rel=1e-12, abs=1e-12)
            assert figure["std"] == pytest.approx(values.std(ddof=1), rel=1e-9, abs=1e-12)
            lower = name in ("fd", "kid", "class_kl")
            worst = int(np.argmax(values) if lower else np.argmin(values))
            assert figure["worst"] == values[worst]
            assert figure["worst_seed"] == SEEDS[worst]
            assert figure["real"] == floor.get(name)
        fd = entry["figures"]["fd"]
        assert f"| fd | lower | {fd['mean']:.3f} | {fd['std']:.3f} |" in markdown
        assert np.std([cells[s]["fd"] for s in SEEDS]) > 0  # the seeds really differ
    for cell in results["cells"]:
        if cell["recipe"] == "cond":  # each conditional seed's worst class
            evaluation = read(os.path.join(cell_dir(out, "cond", cell["seed"]),
                                           "evaluate.json"))
            accuracy = evaluation["generated"]["label_accuracy"]
            assert cell["worst_class_accuracy"] == min(accuracy)
            assert accuracy[cell["worst_class"]] == min(accuracy)
            assert cell["classifier_accuracy"] == evaluation["real_floor"]["label_accuracy"]
            margins = np.subtract(accuracy, evaluation["real_floor"]["label_accuracy"])
            assert cell["class_margin"] == pytest.approx(margins.min(), abs=1e-12)
            assert margins[cell["margin_class"]] == margins.min()
            assert (f"| cond | {cell['seed']} | {cell['worst_class']} | "
                    f"{100 * min(accuracy):.1f}% | {cell['margin_class']} | "
                    f"{100 * margins.min():+.1f} |") in markdown
        else:
            assert "worst_class" not in cell and "class_margin" not in cell
    with open(os.path.join(out, "results.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_a_cell_is_bit_identical_to_the_same_gan_train_command(killed_study, tmp_path):
    """Cell 0 was killed and resumed; the gan.train command its record names, run once
    straight through with the same threads, ends with the same tensors."""
    out = killed_study["out"]
    record = read(os.path.join(cell_dir(out, "plain", 0), "cell.json"))
    words = shlex.split(record["train_command"])
    env = dict(word.split("=", 1) for word in words[:3])
    assert words[3:6] == ["python", "-m", "gan.train"]
    args = [a for a in words[6:] if not a.startswith(("--checkpoint_dir=", "--image_dir="))]
    direct = run_cli("gan.train", *args, f"--checkpoint_dir={tmp_path / 'ckpt'}",
                     f"--image_dir={tmp_path / 'img'}", env=env)
    assert direct.returncode == 0, direct.stderr[-3000:]
    expected = checkpoint_tensors(str(tmp_path / "ckpt" / f"ckpt-{EPOCHS}"))
    got = checkpoint_tensors(os.path.join(cell_dir(out, "plain", 0), "checkpoints",
                                          f"ckpt-{EPOCHS}"))
    assert expected.keys() == got.keys()
    for name in expected:  # weights, Adam slots, step, the noise generator's state
        assert np.array_equal(expected[name], got[name]), name


def test_cell_and_collect_name_the_missing_cells_and_fill_them_in(killed_study, tmp_path):
    """A shared folder where cells 1 and 3 have not run: --collect tables the others and
    names both; --cell=1 (a job-array task) then runs that one alone, straight through, to
    the figures the killed and resumed study gave it."""
    out = str(tmp_path / "out")
    shutil.copytree(killed_study["out"], out)
    for recipe, seed in (("plain", 1), ("cond", 1)):
        shutil.rmtree(cell_dir(out, recipe, seed))
    os.remove(os.path.join(out, "results.json"))
    collected = run_cli("gan.study", "--collect", f"--out={out}")
    assert collected.returncode == 0, collected.stderr[-3000:]
    assert ("Missing: cell 1 (plain seed 1), cell 3 (cond seed 1)"
            in collected.stdout), collected.stdout[-3000:]
    results = read(os.path.join(out, "results.json"))
    assert [(m["index"], m["recipe"], m["seed"]) for m in results["missing"]] == [
        (1, "plain", 1), (3, "cond", 1)]
    assert not results["complete"]
    assert [e["seeds"] for e in results["recipes"]] == [[0], [0]]
    assert results["recipes"][0]["figures"]["fd"]["std"] is None  # one seed: no spread
    missing_md = open(os.path.join(out, "results.md")).read()
    assert "--cell=1`" in missing_md
    assert "--out=" in missing_md and "--out=/" not in missing_md  # no folder of one machine

    # The killed study's cells each had 1 thread (--threads=2 over --parallel=2); a --cell
    # run has the --threads of its machine alone: 1 here, for the same arithmetic.
    args = [a.replace(killed_study["out"], out).replace("--threads=2", "--threads=1")
            for a in killed_study["args"]]
    cell = run_cli("gan.study", *args, "--cell=1")
    assert cell.returncode == 0, cell.stdout[-3000:] + cell.stderr[-3000:]
    assert not os.path.exists(os.path.join(cell_dir(out, "cond", 1)))  # only cell 1 ran
    assert "Resuming" not in open(os.path.join(cell_dir(out, "plain", 1), "train.log")).read()
    collected = run_cli("gan.study", "--collect", f"--out={out}")
    assert "Missing: cell 3 (cond seed 1)" in collected.stdout, collected.stdout[-3000:]
    assert own_figures(out, "plain", 1) == own_figures(killed_study["out"], "plain", 1)
    again = read(os.path.join(out, "results.json"))["cells"][1]
    before = read(os.path.join(killed_study["out"], "results.json"))["cells"][1]
    for key in ("recipe", "seed", "figures", "real_floor", "iterations", "batch_size"):
        assert again[key] == before[key], key


def test_reevaluate_judges_finished_cells_again_and_names_those_it_cannot(killed_study,
                                                                         tmp_path):
    """--reevaluate replaces each finished cell's evaluation by today's gan.evaluate of its
    checkpoint (here: a record made by an older evaluator, without the classifier's own
    per-class accuracy, and with another FD) and rebuilds the results; a cell whose
    checkpoints are elsewhere is named, left as it was, and the exit code is 1."""
    from gan.training import runlock

    out = str(tmp_path / "out")
    shutil.copytree(killed_study["out"], out)
    cond = os.path.join(cell_dir(out, "cond", 0), "cell.json")
    record = read(cond)
    older = json.loads(json.dumps(record))
    del older["evaluation"]["real_floor"]["label_accuracy"]
    older["evaluation"]["generated"]["fd"] = 123.0
    with open(cond, "w") as f:
        json.dump(older, f)
    shutil.rmtree(os.path.join(cell_dir(out, "plain", 1), "checkpoints"))
    elsewhere = open(os.path.join(cell_dir(out, "plain", 1), "cell.json")).read()

    with runlock.hold(out):  # a study running in the folder: refused, nothing changed
        busy = run_cli("gan.study", "--reevaluate", f"--out={out}")
    assert busy.returncode == 2 and "in use by another study" in busy.stderr, busy.stderr
    assert read(cond) == older
    given = run_cli("gan.study", "--reevaluate", f"--out={out}", "--recipes=plain")
    assert given.returncode == 2 and "--reevaluate needs only --out" in given.stderr

    result = run_cli("gan.study", "--reevaluate", f"--out={out}")
    assert result.returncode == 1, result.stderr[-3000:]
    assert "plain seed 1] skipped" in result.stdout, result.stdout[-3000:]
    again = read(cond)
    for part in ("generated", "real_floor"):  # the evaluator's figures, as first judged
        assert again["evaluation"][part] == record["evaluation"][part], part
    assert again["train_seconds"] == record["train_seconds"]
    assert open(os.path.join(cell_dir(out, "plain", 1), "cell.json")).read() == elsewhere
    results = read(os.path.join(out, "results.json"))
    assert results["complete"]  # the skipped cell keeps its record, and its place
    margin = results["recipes"][1]["figures"]["class_margin"]
    assert margin["mean"] == pytest.approx(np.mean([own_figures(out, "cond", s)["class_margin"]
                                                    for s in SEEDS]), abs=1e-12)


@pytest.mark.parametrize("extra, message", [
    (["--seed=3"], "--seed is set by the study for each cell"),
    (["--epochs=0"], "recipe plain ("),  # gan.train's own check, naming the recipe
    (["--no_such_flag=1"], "no_such_flag"),
    (["--cell=4"], "--cell must be in 0..3"),
    (["--parallel=0"], "--parallel must be positive"),
])
def test_bad_flags_are_refused_before_anything_is_written(tmp_path, recipes, data_dir, extra,
                                                          message):
    out = tmp_path / "out"
    result = run_cli("gan.study", *study_args(out, recipes, data_dir), *extra)
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert not out.exists()


def test_unknown_recipe_and_collect_without_a_study_are_refused(tmp_path):
    unknown = run_cli("gan.study", "--recipes=no_such_recipe", f"--out={tmp_path / 'a'}")
    assert unknown.returncode == 2
    assert "'no_such_recipe' is neither a flagfile nor one of experiments/*.flags" in \
        unknown.stderr and "best_unconditional" in unknown.stderr
    collect = run_cli("gan.study", "--collect", f"--out={tmp_path / 'b'}")
    assert collect.returncode == 2 and "holds no study.json" in collect.stderr
    assert os.listdir(tmp_path) == []


def test_a_field_a_cell_record_lacks_is_at_its_default():
    """A cell recorded before a TrainConfig field existed resumes (and is judged again) with
    today's code while the field is at its default; another value is a difference."""
    import subprocess
    import sys

    code = ("import json; from gan import study; old = {'loss': 'rpgan', 'r1': 0.1}; "
            "print(json.dumps([study.differing_fields(old, dict(old, penalty_every=1)), "
            "study.differing_fields(old, dict(old, penalty_every=4)), "
            "study.differing_fields(old, dict(old, r1=0.2, epochs=5, quiet=True))]))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, check=True)
    assert json.loads(out.stdout) == [[], ["penalty_every"], ["epochs", "r1"]]
