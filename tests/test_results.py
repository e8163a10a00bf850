"""`python -m gan.results`: the committed results pages are what it generates from the
committed studies, and what it generates from made-up studies is right (recipe rows by
dataset with the seeds' mean, std and worst, ablations in their own table, stale pages
found by --check, bad inputs refused)."""

import json
import os
import shutil
import statistics

import pytest

from conftest import REPO, run_cli
from gan import results, study

MACHINE = {"cpu": "Test CPU", "avx512": True, "cpus": 2, "tensorflow": "2.x",
           "python": "3.x", "date": "2026-01-02"}


def test_committed_pages_match_the_generator():
    """experiments/RESULTS.md and the README's tables are exactly what `python -m
    gan.results` writes from the committed studies (rerun it after a study lands)."""
    result = run_cli("gan.results", "--check")
    assert result.returncode == 0, result.stderr


def make_study(root, name, recipes, train_args=(), dataset="mnist", figures=None, seeds=None,
               floor=None):
    """A finished study under root/experiments/studies/<name>, made as gan.study makes one:
    cell.json records (figures[recipe][seed] = {figure: value}; the real floor 0.5 for each,
    or as `floor` gives), then study.collect."""
    out = os.path.join(root, "experiments", "studies", name)
    seeds = seeds or sorted({s for r in recipes for s in figures[r]})
    cells = []
    for recipe in recipes:
        for seed in seeds:
            index = len(cells)
            folder = f"{recipe}/seed{seed}"
            cells.append({"index": index, "recipe": recipe, "seed": seed, "folder": folder})
            if seed not in figures[recipe]:
                continue  # a missing cell
            generated = dict(figures[recipe][seed], num_samples=100)
            record = {
                "index": index, "recipe": recipe, "seed": seed, "dataset": dataset,
                "iterations": 1000, "batch_size": 64, "threads": 1,
                "train_seconds": 60.0 * (seed + 1), "eval_seconds": 5.0,
                "train_command": "python -m gan.train", "machine": MACHINE,
                "evaluation": {"generated": generated,
                               "real_floor": {**{k: 0.5 for k in figures[recipe][seed]},
                                              **(floor or {})}}}
            os.makedirs(os.path.join(out, folder))
            study.write_json(os.path.join(out, folder, "cell.json"), record)
    study.write_json(os.path.join(out, "study.json"), {
        "recipes": [{"name": r, "flagfile": f"experiments/{r}.flags", "given": r}
                    for r in recipes],
        "seeds": seeds, "train_args": list(train_args), "num_samples": None, "cells": cells})
    study.write_json(os.path.join(out, "results.json"), study.collect(out))
    return out


@pytest.fixture
def root(tmp_path):
    """A repository with a README holding the generated block, and two studies: recipes
    `good` and `poor` at full length on MNIST (poor missing seed 2), and an ablation."""
    (tmp_path / "experiments").mkdir()
    (tmp_path / "README.md").write_text(
        f"# Title\n\nBefore.\n\n{results.README_BEGIN}\nold table\n{results.README_END}\n\n"
        "After.\n")
    make_study(tmp_path, "good", ["good"], figures={"good": {
        0: {"fd": 2.0, "precision": 0.80, "recall": 0.70},
        1: {"fd": 3.0, "precision": 0.90, "recall": 0.60},
        2: {"fd": 7.0, "precision": 0.85, "recall": 0.65}}})
    make_study(tmp_path, "poor", ["poor"], figures={"poor": {
        0: {"fd": 10.0, "precision": 0.5, "recall": 0.5},
        1: {"fd": 12.0, "precision": 0.4, "recall": 0.3}}}, seeds=[0, 1, 2])
    make_study(tmp_path, "ablation_x", ["good", "good_variant"], train_args=["--epochs=500"],
               figures={"good": {0: {"fd": 4.0}, 1: {"fd": 6.0}},
                        "good_variant": {0: {"fd": 8.0}, 1: {"fd": 9.0}}})
    return tmp_path


def table_row(text, start):
    """The cells of the first table row of `text` that begins with `start`."""
    line = next(line for line in text.splitlines() if line.startswith(start))
    return [c.strip() for c in line.strip("|").split("|")]


def test_recipe_rows_are_the_seeds_mean_std_and_worst(root):
    page = results.results_page(str(root))
    header = table_row(page, "| recipe |")
    row = dict(zip(header, table_row(page, "| [`good`]")))
    for name, values, worst, form in (("FD", [2.0, 3.0, 7.0], 7.0, "{:.2f}"),
                                      ("precision", [0.80, 0.90, 0.85], 0.80, "{:.3f}"),
                                      ("recall", [0.70, 0.60, 0.65], 0.60, "{:.3f}")):
        mean, std = statistics.mean(values), statistics.stdev(values)
        assert row[name] == f"{form.format(mean)} ± {form.format(std)} ({form.format(worst)})"
    assert row["seeds"] == "0, 1, 2"
    assert row["minutes"] == "2.0"  # the median of 1, 2 and 3 minutes
    assert row["iterations"] == "1,000" and row["batch"] == "64"
    poor = dict(zip(header, table_row(page, "| [`poor`]")))
    assert poor["seeds"] == "0, 1 (missing 2)"
    assert poor["FD"] == "11.00 ± 1.41 (12.00)"
    assert dict(zip(header, table_row(page, "| *real data*")))["FD"] == "0.50"
    assert page.index("| [`poor`]") < page.index("| [`good`]")  # from worst to best FD
    # Machine and dates in the header, stated once.
    assert page.count("Test CPU") == 1 and "2026-01-02" in page


def test_conditional_recipes_are_measured_against_the_classifier(tmp_path):
    """A conditional recipe's worst class, and how far its class furthest below the
    classifier's own accuracy on real test images falls short: per seed, and over seeds."""
    (tmp_path / "experiments").mkdir()
    (tmp_path / "README.md").write_text(f"{results.README_BEGIN}\n{results.README_END}\n")
    right = [0.99] * 10
    right[3] = 0.95  # the classifier's own accuracy on real test images of each class
    drawn = {0: [1.0] * 10, 1: [1.0] * 10}
    drawn[0][3], drawn[0][7] = 0.96, 0.984  # 3 drawn least often, 7 furthest below (-0.6)
    drawn[1][3] = 0.94  # 3 both (-1.0)
    make_study(tmp_path, "cond", ["cond"], floor={"label_accuracy": right}, figures={"cond": {
        s: {"fd": 1.0, "label_accuracy": drawn[s]} for s in (0, 1)}})
    page = results.results_page(str(tmp_path))
    row = dict(zip(table_row(page, "| recipe |"), table_row(page, "| [`cond`]")))
    assert row["worst class drawn as asked"] == "95.0% ± 1.4% (94.0%)"
    assert row["worst class minus the classifier's accuracy on it"] == "-0.8% ± 0.3% (-1.0%)"
    assert table_row(page, "| `cond` | 0 |") == ["`cond`", "0", "3", "96.0%", "7", "-0.6%"]
    assert table_row(page, "| `cond` | 1 |") == ["`cond`", "1", "3", "94.0%", "3", "-1.0%"]


def test_ablations_have_their_own_table(root):
    page = results.results_page(str(root))
    recipes_part, ablations = page.split("## Ablations")
    assert "good_variant" not in recipes_part
    assert "--epochs=500" in ablations
    row = table_row(ablations, "| `good_variant`")
    assert "8.50 ± 0.71 (9.00)" in row
    # The full-length `good` row is its own study's (FD mean 4.0), not the ablation's arm (5.0).
    good = dict(zip(table_row(recipes_part, "| recipe |"), table_row(recipes_part, "| [`good`]")))
    assert good["FD"].startswith("4.00 ± ")
    assert "5.00 ± 1.41 (6.00)" in table_row(ablations, "| `good`")


def test_readme_block_is_replaced_and_check_finds_stale_pages(root):
    result = run_cli("gan.results", "--check", f"--root={root}")
    assert result.returncode == 1
    assert "experiments/RESULTS.md" in result.stderr and "README.md" in result.stderr
    assert not (root / "experiments" / "RESULTS.md").exists()  # --check writes nothing
    result = run_cli("gan.results", f"--root={root}")
    assert result.returncode == 0, result.stderr
    readme = (root / "README.md").read_text()
    assert readme.startswith("# Title\n\nBefore.\n\n") and readme.endswith("\n\nAfter.\n")
    assert "old table" not in readme
    assert "`python -m gan.train --flagfile=experiments/good.flags` | 2.0 | 4.00 ± 2.65" in readme
    assert "good_variant" not in readme  # ablations stay out of the README
    # `poor` misses seed 2 while `good` has three: its row says which seeds it shows.
    assert "`python -m gan.train --flagfile=experiments/poor.flags` (seeds so far: 0, 1) | " \
        in readme
    assert "good.flags` (seeds" not in readme
    assert run_cli("gan.results", "--check", f"--root={root}").returncode == 0
    # A cell that lands changes the figures: the committed pages are stale again.
    make_study_cell = root / "experiments" / "studies" / "poor"
    shutil.rmtree(make_study_cell)
    make_study(root, "poor", ["poor"], figures={"poor": {
        0: {"fd": 10.0, "precision": 0.5, "recall": 0.5},
        1: {"fd": 12.0, "precision": 0.4, "recall": 0.3},
        2: {"fd": 11.0, "precision": 0.45, "recall": 0.4}}})
    result = run_cli("gan.results", "--check", f"--root={root}")
    assert result.returncode == 1 and "RESULTS.md" in result.stderr


def test_a_study_still_running_alone_on_its_dataset_says_its_seeds(root):
    """The only Fashion-MNIST recipe has one of its three seeds: the heading counts the
    seeds its study plans, and the row says which it shows."""
    make_study(root, "clothes", ["clothes"], dataset="fashion_mnist", seeds=[0, 1, 2],
               figures={"clothes": {0: {"fd": 1.5, "precision": 0.8, "recall": 0.6}}})
    assert run_cli("gan.results", f"--root={root}").returncode == 0
    readme = (root / "README.md").read_text()
    assert "Fashion-MNIST, mean ± std over 3 training seeds:" in readme
    assert "`python -m gan.train --flagfile=experiments/clothes.flags` (seeds so far: 0) | " \
        in readme


def test_notes_follow_their_study(root):
    (root / "experiments" / "studies" / "good" / "notes.md").write_text("Tried X: worse.\n")
    (root / "experiments" / "studies" / "notes.md").write_text("### Retired\n\nold: beaten.\n")
    page = results.results_page(str(root))
    assert page.index("| [`good`]") < page.index("Tried X: worse.")
    assert "### Retired\n\nold: beaten." in page


def test_bench_gives_the_speed_section(root):
    (root / "experiments" / "bench.json").write_text(json.dumps({
        "machine": "2 CPUs", "recorded": MACHINE, "project_it_per_s": 500.0,
        "original_it_per_s": 10.0, "speedup": 50.0, "e2e_seconds": 25.0,
        "e2e_cold_seconds": 30.0, "e2e_epochs": 10000, "images_per_s": {"32": 16000.0}}))
    speed = results.results_page(str(root)).split("## Speed")[1]
    assert "| 500 it/s |" in speed and "| 50.0x |" in speed and "25.0 s" in speed
    assert "16,000 images/s" in speed


@pytest.mark.parametrize("damage, message", [
    ("no_block", "has no generated block"),
    ("twice", "in two full-length studies"),
    ("bad_json", "is not JSON"),
])
def test_bad_inputs_are_refused(root, damage, message):
    if damage == "no_block":
        (root / "README.md").write_text("# Title\n")
    elif damage == "twice":
        make_study(root, "good_again", ["good"], figures={"good": {0: {"fd": 1.0}}})
    else:
        (root / "experiments" / "studies" / "good" / "results.json").write_text("{")
    before = (root / "README.md").read_text()
    result = run_cli("gan.results", f"--root={root}")
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert (root / "README.md").read_text() == before
    assert not (root / "experiments" / "RESULTS.md").exists()


def test_a_study_of_a_changed_recipe_is_refused(root):
    """Published figures describe the recipes as they are: cells recorded with what their
    flagfile gave pass (also after a change of where things are written), and once the
    recipe's settings change, or its flagfile goes, gan.results names the study, the cell
    and the setting, exits 2 and writes nothing."""
    flagfile = root / "experiments" / "good.flags"
    flagfile.write_text("--batch_size=64\n--epochs=500\n")
    out = root / "experiments" / "studies" / "good"
    cells = [study.Cell(i, "good", str(flagfile), seed, str(out / "good" / f"seed{seed}"),
                        [f"--flagfile={flagfile}", f"--seed={seed}"])
             for i, seed in enumerate([0, 1, 2])]
    study.parse_configs(cells)
    for cell in cells:
        path = out / "good" / f"seed{cell.seed}" / "cell.json"
        record = json.loads(path.read_text())
        record["config"] = cell.config
        path.write_text(json.dumps(record))
    assert run_cli("gan.results", f"--root={root}").returncode == 0
    flagfile.write_text("--batch_size=64\n--epochs=500\n--image_dir=elsewhere\n--quiet\n")
    assert run_cli("gan.results", "--check", f"--root={root}").returncode == 0

    before = (root / "README.md").read_text()
    flagfile.write_text("--batch_size=32\n--epochs=500\n")
    result = run_cli("gan.results", f"--root={root}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "study good: good seed 0 ran --batch_size=64" in result.stderr
    assert "gives --batch_size=32 today" in result.stderr
    assert (root / "README.md").read_text() == before

    flagfile.unlink()
    result = run_cli("gan.results", f"--root={root}")
    assert result.returncode == 2 and "experiments/good.flags, which is gone" in result.stderr
