"""`python -m gan.bench` as a user runs it, shrunk to a smoke run. It checks what the
benchmark reports and that its end-to-end run really trains, not how fast anything is (the
speed figures are recorded in experiments/RESULTS.md, not asserted)."""

import json

import pytest

from conftest import run_cli, run_cli_cases


@pytest.mark.slow
def test_a_small_benchmark_reports_every_figure(tmp_path, data_dir):
    out = tmp_path / "bench.json"
    result = run_cli("gan.bench", f"--data_dir={data_dir}", "--steps=50", "--original_steps=2",
                     "--batch_sizes=32", "--batch_steps=50", "--e2e_epochs=101",
                     "--e2e_runs=2", f"--json_out={out}", timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    printed = json.loads(result.stdout.strip().splitlines()[-1])
    assert json.loads(out.read_text()) == printed
    assert printed["project_it_per_s"] > 0 and printed["original_it_per_s"] > 0
    # The compiled loop beats the original's predict + train_on_batch loop (by ~40x on 2
    # cores; 1x leaves room for any load), and the table shows the JSON's figures.
    assert printed["speedup"] > 1
    for label, key in (("this project's loop:", "project_it_per_s"),
                       ("original Keras loop:", "original_it_per_s"), ("speed-up:", "speedup")):
        (line,) = [x for x in result.stdout.splitlines() if x.startswith(label)]
        assert float(line[len(label):].strip().rstrip("x").split()[0]) == pytest.approx(
            printed[key], abs=0.05)
    # two end-to-end runs, each writing the strips of epochs 0 and 100: the first compiles,
    # the second loads the compiled loop and is the reported time
    runs = printed["e2e_all_seconds"]
    assert len(runs) == 2 and printed["e2e_images"] == [2, 2]
    assert printed["e2e_cold_seconds"] == runs[0] and printed["e2e_seconds"] == runs[1]
    assert list(printed["images_per_s"]) == ["32"]
    assert "speed-up:" in result.stdout and "(run loading the loop from" in result.stdout
    assert "the first time (compiling)" in result.stdout


@pytest.mark.slow
def test_bad_counts_exit_2_naming_the_flag():
    flags = ["--e2e_runs=0", "--steps=-1", "--original_steps=0", "--batch_steps=0",
             "--e2e_epochs=-5"]
    for flag, result in zip(flags, run_cli_cases("gan.bench", [[flag] for flag in flags])):
        assert result.returncode == 2, flag
        name, value = flag.split("=")
        assert f"error: {name} must be positive, got {value}" in result.stderr
