"""`python -m gan.bench` as a user runs it, shrunk to a smoke run. It checks what the
benchmark reports and that its end-to-end run really trains, not how fast anything is (the
speed figures are recorded in experiments/RESULTS.md, not asserted)."""

import json

import pytest

from conftest import run_cli


@pytest.mark.slow
def test_a_small_benchmark_reports_every_figure(tmp_path, data_dir):
    out = tmp_path / "bench.json"
    result = run_cli("gan.bench", f"--data_dir={data_dir}", "--steps=100", "--original_steps=3",
                     "--batch_sizes=32,64", "--batch_steps=100", "--e2e_epochs=201",
                     "--e2e_runs=3", f"--json_out={out}", timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    printed = json.loads(result.stdout.strip().splitlines()[-1])
    assert json.loads(out.read_text()) == printed
    assert printed["project_it_per_s"] > 0 and printed["original_it_per_s"] > 0
    assert printed["speedup"] == pytest.approx(
        printed["project_it_per_s"] / printed["original_it_per_s"])
    # three end-to-end runs, each writing the strips of epochs 0, 100 and 200: the first
    # compiles, the median of the other two (the upper one) is the reported time
    runs = printed["e2e_all_seconds"]
    assert len(runs) == 3 and printed["e2e_images"] == [3, 3, 3]
    assert printed["e2e_cold_seconds"] == runs[0] and printed["e2e_seconds"] == max(runs[1:])
    assert sorted(printed["images_per_s"]) == ["32", "64"]
    assert "speed-up:" in result.stdout and "median of 2 runs loading" in result.stdout
    assert "the first time (compiling)" in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("flag", ["--e2e_runs=0", "--steps=-1"])
def test_bad_counts_exit_2_naming_the_flag(flag):
    result = run_cli("gan.bench", flag, timeout=120)
    assert result.returncode == 2
    assert f"error: {flag.split('=')[0]} must be positive" in result.stderr
