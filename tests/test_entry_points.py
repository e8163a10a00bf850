"""Every console script in setup.cfg is its `python -m` command, with the same --help."""

import configparser
import json
import os
import re
import subprocess
import sys

import pytest

from conftest import REPO

def console_scripts():
    parser = configparser.ConfigParser()
    parser.read(os.path.join(REPO, "setup.cfg"))
    lines = parser["options.entry_points"]["console_scripts"].strip().splitlines()
    return [tuple(part.strip() for part in line.split("=")) for line in lines]


def test_the_tools_have_console_scripts():
    names = {name for name, _ in console_scripts()}
    assert {"gan-train", "gan-data", "gan-sample", "gan-export"} <= names


# One process for every --help: for each console script it forks twice, once running the
# module as `python -m module --help` does (runpy, as __main__) and once as the generated
# `name` script does (import the function, call it), each child with a fresh set of flags
# and its own stdout/stderr. absl, TensorFlow (gan.data imports it before parsing flags)
# and the `gan` package are imported once, before the forks; no TensorFlow op runs.
HELPS = """
import json, os, runpy, sys, tempfile
import absl.app, absl.flags, gan, tensorflow

def child(name, module, function, how):
    if how == "module":
        sys.argv = [module, "--help"]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    else:
        sys.argv = [name, "--help"]
        target = __import__(module, fromlist=[function])
        sys.exit(getattr(target, function)())

results = {}
for name, module, function in json.loads(sys.argv[1]):
    for how in ("module", "script"):
        with tempfile.TemporaryFile("w+") as out:
            pid = os.fork()
            if pid == 0:
                os.dup2(out.fileno(), 1)
                os.dup2(out.fileno(), 2)
                code = 0
                try:
                    child(name, module, function, how)
                except SystemExit as e:
                    code = e.code if isinstance(e.code, int) else 1
                except BaseException:
                    import traceback
                    traceback.print_exc()
                    code = 99
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
            _, status = os.waitpid(pid, 0)
            out.seek(0)
            results[f"{name} {how}"] = [os.waitstatus_to_exitcode(status), out.read()]
print("@@helps@@" + json.dumps(results))
"""


@pytest.fixture(scope="module")
def helps():
    """{"<script> module" | "<script> script": (exit code, output)} of every --help."""
    scripts = [(name, *target.split(":")) for name, target in console_scripts()]
    result = subprocess.run([sys.executable, "-c", HELPS, json.dumps(scripts)], cwd=REPO,
                            capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert result.returncode == 0 and "@@helps@@" in result.stdout, result.stderr[-3000:]
    return {key: tuple(value) for key, value in
            json.loads(result.stdout.split("@@helps@@", 1)[1]).items()}


def flag_names(help_text):
    return set(re.findall(r"^\s+--(?:\[no\])?(\w+):", help_text, re.MULTILINE))


@pytest.mark.slow
@pytest.mark.parametrize("name,target", console_scripts())
def test_console_script_help_equals_the_module_help(helps, name, target):
    module_code, as_module = helps[f"{name} module"]
    script_code, as_script = helps[f"{name} script"]
    # absl exits 1 after printing --help
    assert module_code == script_code == 1, as_script[-2000:]
    assert len(flag_names(as_module)) >= 2  # its own flags are listed (gan.results has 2)
    assert flag_names(as_script) == flag_names(as_module)
    first_doc_line = as_module.strip().splitlines()[0]
    assert first_doc_line in as_script
    assert "Traceback" not in as_module + as_script


@pytest.mark.slow
def test_help_says_what_an_epoch_is(helps):
    _, text = helps["gan-train module"]
    assert "ONE 'epoch' is one iteration on one batch" in " ".join(text.split())
