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
    app.run(_refusing_usage_errors(main), flags_parser=parse_flags)


def parse_flags(argv):
    """absl's flag parsing, with its errors (a misspelt flag, a value of the wrong type, a
    flagfile that cannot be read) ending as every other refusal does: one `error:` line and
    exit 2. absl's own parser prints a "FATAL" line and the usage hint, then exits 1."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        # absl's messages may span lines and some start with its own "ERROR:: ": keep one line.
        fail(" ".join(str(e).split()).removeprefix("ERROR:: "))


def _refusing_usage_errors(main):
    """main, with app.UsageError (e.g. stray positional arguments) refused like a bad flag:
    absl would print the whole --help and exit 1."""

    def wrapped(argv):
        try:
            return main(argv)
        except app.UsageError as e:
            fail(e)

    return wrapped


def define_truncation_flag(module_name):
    """The --truncation flag of the commands that sample a checkpoint's generator
    (gan.evaluate, gan.sample), filed under `module_name` for its --help. Default None: the
    truncation the checkpoint's run recorded (models.inference.run_truncation). A negative
    or NaN value is refused while the flags are parsed: one `error:` line, exit 2."""
    if module_name == "__main__":  # absl files the flags of `python -m gan.<cmd>` under argv[0]
        module_name = sys.argv[0]
    flags.DEFINE_float(
        "truncation", None,
        "Sample the noise from N(0, 1) truncated to [-t, t] (the truncation trick: "
        "better-formed images, less variety); 0 = plain N(0, 1). Default: the truncation "
        "the checkpoint's run samples with (gan.train --truncation; 0 if it has none).",
        module_name=module_name)
    flags.register_validator("truncation", lambda t: t is None or t >= 0,  # NaN fails too
                             message="must be >= 0 (0 = off)")


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
