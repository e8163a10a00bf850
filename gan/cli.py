"""What every `python -m gan.<cmd>` entry point shares."""

import contextlib
import gc
import sys

from absl import app, flags


def run(main, module_name):
    """app.run(main) for the entry module `module_name`, with the same --help whether started
    as `python -m gan.<cmd>` or as its console script `gan-<cmd>`.

    absl's --help shows the docstring and flags of the __main__ module; under a console
    script that is the generated wrapper, so the command's own docstring and flags are lent
    to it here.
    """
    module = sys.modules[module_name]
    if module_name != "__main__":
        main_name = sys.argv[0]  # the name absl files the main module's flags under
        for flag in flags.FLAGS.get_key_flags_for_module(module_name):
            flags.FLAGS.register_key_flag_for_module(main_name, flag)
        sys.modules["__main__"].__doc__ = module.__doc__
    app.run(main)


def fail(message, exit_code=2):
    """Ends a command on bad input: `error: <message>` on stderr, then exit `exit_code`."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(exit_code)


@contextlib.contextmanager
def heavy_imports():
    """Wrap a command's imports of TensorFlow and the like: Python's cyclic garbage collector
    is paused while they run, then every object they made is frozen (gc.freeze) out of its
    later passes. TensorFlow and Keras make ~10^6 long-lived objects on import; without
    this the collector scans them over and over during the import and again when the
    process exits (seconds of a run's start-up and exit on 2 CPU cores).
    Objects made later are collected as usual."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
        gc.freeze()
