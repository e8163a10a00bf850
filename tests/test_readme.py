"""The README keeps working: each fenced `python -m gan.*` command in it runs, shrunk (fewer
epochs, samples and digits, --noxla), in the order the README gives them, in a temporary
folder (so the outputs the commands name, such as checkpoints/ and runs/, land there and
not in the repository); every path the README's layout names exists; every relative link of
the README and docs/ points at a file; the Korean quick start uses only the README's commands."""

import glob
import os
import re
import resource
import shlex
import subprocess
import sys
import time

import pytest

from conftest import REPO

README = os.path.join(REPO, "README.md")
README_KO = os.path.join(REPO, "docs", "README.ko.md")


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def fenced_blocks(text):
    return re.findall(r"^```[^\n]*\n(.*?)^```", text, re.MULTILINE | re.DOTALL)


def commands(text):
    """[argv after `python`] of each `python -m gan.*` command in the fenced blocks, in order;
    a line continued by a backslash is one command, a `# comment` is dropped."""
    found = []
    for block in fenced_blocks(text):
        for line in block.replace("\\\n", " ").splitlines():
            # a line that runs it, after any VAR=value settings (not one that names it)
            match = re.match(r"\s*(?:\w+=\S+\s+)*(python -m gan\..*)", line)
            if match:
                found.append(shlex.split(match.group(1), comments=True)[1:])
    return found


def with_flag(args, name, value):
    """args with --name set to value (replaced where given, else appended: absl takes the
    last one, also after a --flagfile)."""
    kept = [a for a in args if not a.startswith(f"--{name}=")]
    return kept + [f"--{name}={value}"]


def flag_value(args, name):
    values = [a.split("=", 1)[1] for a in args if a.startswith(f"--{name}=")]
    return values[-1] if values else None


def checkpoint_dir(argv, cwd):
    """The --checkpoint_dir a gan.train command uses: its own flag, else its flagfile's, else
    the default."""
    flagfile = flag_value(argv, "flagfile")
    from_file = flagfile and flag_value(read(os.path.join(cwd, flagfile)).split(), "checkpoint_dir")
    return flag_value(argv, "checkpoint_dir") or from_file or "checkpoints"


def shrink(args):
    """The same command, made small: 1/1000 of the epochs (10 for a flagfile's), no XLA
    compilation, few samples. A module without a rule fails the test: add one."""
    module, rest = args[1], args[2:]
    if module == "gan.train":
        epochs = flag_value(rest, "epochs")
        rest = with_flag(rest, "epochs", max(1, int(epochs) // 1000) if epochs else 10)
        eval_every = flag_value(rest, "eval_every")
        if eval_every:
            rest = with_flag(rest, "eval_every", max(1, int(eval_every) // 1000))
            rest = with_flag(rest, "eval_samples", 100)
        if not any(a in ("--xla", "--xla=true") for a in rest):
            rest = rest + ["--noxla"]
    elif module == "gan.sample":
        rest = with_flag(rest, "num", min(8, int(flag_value(rest, "num") or 100)))
    elif module == "gan.evaluate":
        if not flag_value(rest, "images"):
            rest = with_flag(rest, "num_samples", 100)
    elif module == "gan.bench":
        rest = rest + ["--steps=50", "--original_steps=2", "--batch_sizes=32",
                       "--batch_steps=20", "--noend_to_end"]
    elif module != "gan.export":
        pytest.fail(f"no rule to shrink `python -m {module}` (README); add one in {__file__}")
    return ["-m", module, *rest]


def unique(found):
    """Each command once, where it first appears (a repeated one is the same check)."""
    seen = []
    for args in found:
        if args not in seen:
            seen.append(args)
    return seen


def children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def test_the_readme_names_the_main_commands_and_each_can_be_shrunk():
    found = commands(read(README))
    modules = [args[1] for args in found]
    assert {"gan.train", "gan.sample", "gan.evaluate", "gan.export"} <= set(modules), modules
    for args in found:
        shrink(args)  # fails for a tool without a rule


@pytest.mark.slow
def test_every_readme_command_runs_shrunk(tmp_path, data_dir):
    # Flagfiles are read from the repository; everything written lands in tmp_path.
    os.symlink(os.path.join(REPO, "experiments"), tmp_path / "experiments")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TFDS_DATA_DIR=data_dir,
               PYTHONPATH=os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]))
    trained = set()  # checkpoint folders an earlier command trained
    for args in unique(commands(read(README))):
        argv = shrink(args)
        started, cpu = time.time(), children_cpu()
        result = subprocess.run([sys.executable, *argv], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=300)
        print(f"{time.time() - started:5.1f} s wall {children_cpu() - cpu:5.1f} s CPU  "
              f"python {shlex.join(argv)}")
        shown = f"`python {shlex.join(args)}` (run as `python {shlex.join(argv)}`)"
        assert result.returncode == 0, f"{shown} failed:\n{result.stderr[-3000:]}"
        out = flag_value(argv, "out") or flag_value(argv, "json_out")
        if out:
            assert (tmp_path / out).exists(), f"{shown} did not write {out}"
        if args[1] == "gan.train":
            folder = checkpoint_dir(argv, tmp_path)
            if folder in trained:  # a rerun resumes or has nothing left to do
                assert re.search(r"Resuming from step [1-9]|Already trained", result.stdout), (
                    f"{shown} did not resume:\n{result.stdout[-2000:]}")
            trained.add(folder)
            assert "Done:" in result.stdout or "Already trained" in result.stdout, result.stdout


def layout_section(text):
    match = re.search(r"^## Layout\n(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    assert match, "README.md has no '## Layout' section"
    return match.group(1)


def test_every_path_in_the_layout_exists():
    named = set(re.findall(r"\b((?:gan|tests|experiments|docs)/[\w./*-]*\w)",
                           layout_section(read(README))))
    assert {"gan/train.py", "gan/config.py", "gan/training"} <= named
    missing = sorted(p for p in named if not glob.glob(os.path.join(REPO, p)))
    assert not missing, f"the README's layout names paths that do not exist: {missing}"


def architecture_tree():
    """The paths of docs/architecture.md's folder tree (its first code block): each line's
    first word, under the folders of less indented lines above it."""
    block = re.search(r"^```\n(.*?)^```", read(os.path.join(REPO, "docs", "architecture.md")),
                      re.MULTILINE | re.DOTALL).group(1)
    paths, folders = [], []
    for line in block.splitlines():
        name = line.split()[0] if line.strip() else ""
        depth = (len(line) - len(line.lstrip())) // 2
        if not name or not re.fullmatch(r"[\w.]+/?", name) or depth > len(folders):
            continue  # a continued description
        folders[depth:] = [name.rstrip("/")] if name.endswith("/") else []
        path = "/".join(folders if name.endswith("/") else [*folders[:depth], name])
        paths.append(path)
    return paths


def test_the_architecture_pages_tree_names_paths_that_exist():
    paths = architecture_tree()
    assert {"gan/training/step.py", "gan/models/registry.py", "gan/datasets/__init__.py"} \
        <= set(paths)
    missing = [p for p in paths if not os.path.exists(os.path.join(REPO, p))]
    assert not missing, f"docs/architecture.md names paths that do not exist: {missing}"


@pytest.mark.parametrize("path", [README, *sorted(glob.glob(os.path.join(REPO, "docs", "*.md")))],
                         ids=os.path.basename)
def test_every_relative_link_points_at_a_file(path):
    links = re.findall(r"\]\(([^)\s]+)\)", read(path))
    local = [link.split("#")[0] for link in links if not re.match(r"[a-z]+:", link)]
    base = os.path.dirname(path)
    missing = [link for link in local if link and not os.path.exists(os.path.join(base, link))]
    assert local and not missing, f"{os.path.relpath(path, REPO)} links to missing {missing}"


def test_the_korean_quick_start_uses_the_readmes_commands():
    english = {shlex.join(args) for args in commands(read(README))}
    korean = [shlex.join(args) for args in commands(read(README_KO))]
    assert len(korean) >= 4
    assert [c for c in korean if c not in english] == []

