"""Every console script in setup.cfg is its `python -m` command, with the same --help."""

import configparser
import os
import re
import subprocess
import sys

import pytest

from conftest import REPO, run_cli


def console_scripts():
    parser = configparser.ConfigParser()
    parser.read(os.path.join(REPO, "setup.cfg"))
    lines = parser["options.entry_points"]["console_scripts"].strip().splitlines()
    return [tuple(part.strip() for part in line.split("=")) for line in lines]


def test_the_tools_have_console_scripts():
    names = {name for name, _ in console_scripts()}
    assert {"gan-train", "gan-data", "gan-sample", "gan-export"} <= names


def flag_names(help_text):
    return set(re.findall(r"^\s+--(?:\[no\])?(\w+):", help_text, re.MULTILINE))


@pytest.mark.slow
@pytest.mark.parametrize("name,target", console_scripts())
def test_console_script_help_equals_the_module_help(name, target):
    module, function = target.split(":")
    as_module = run_cli(module, "--help", timeout=120)
    as_script = subprocess.run(  # what the generated `name` script does
        [sys.executable, "-c", f"import sys; sys.argv[0] = {name!r}; "
         f"from {module} import {function}; sys.exit({function}())", "--help"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    # absl exits 1 after printing --help
    assert as_script.returncode == as_module.returncode, as_script.stderr[-2000:]
    assert len(flag_names(as_module.stdout)) >= 3
    assert flag_names(as_script.stdout) == flag_names(as_module.stdout)
    first_doc_line = as_module.stdout.strip().splitlines()[0]
    assert first_doc_line in as_script.stdout
