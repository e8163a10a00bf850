"""Graceful stop on Ctrl-C (SIGINT) or SIGTERM: finish the current compiled call, save a
checkpoint at the current step, exit with 128 + the signal number.

The handler only records the signal; the training loop checks it between compiled calls
(each at most --steps_per_call iterations, a fraction of a second for the MLP), so a stop
never lands in the middle of an update or of a checkpoint write. Exit codes follow the
shell's convention: 130 after SIGINT, 143 after SIGTERM. A second signal while stopping
gets the previous behaviour at once (KeyboardInterrupt for Ctrl-C, death for SIGTERM).
"""

import contextlib
import signal
import threading

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def exit_code(signum):
    """The shell's exit status for a process stopped by signal `signum`: 128 + signum."""
    return 128 + int(signum)


class StopRequest:
    """Truthy once a stop signal arrived; `signum` says which (None before)."""

    def __init__(self):
        self.signum = None

    def __bool__(self):
        return self.signum is not None

    @property
    def name(self):
        return signal.Signals(self.signum).name


class Interrupted(Exception):
    """Training stopped on a signal after saving a checkpoint at `step`.

    `exit_code` is what a command should exit with (130 for SIGINT, 143 for SIGTERM).
    """

    def __init__(self, signum, step, message):
        super().__init__(message)
        self.signum = signum
        self.step = step
        self.exit_code = exit_code(signum)


@contextlib.contextmanager
def stop_requested(signals=STOP_SIGNALS):
    """Installs handlers for `signals` that only set the yielded StopRequest; restores the
    previous handlers on exit. Outside the main thread (where Python cannot install signal
    handlers) it yields a request that never becomes true.
    """
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = {}

    def restore():
        for signum, handler in previous.items():
            # None: a handler installed from C; the default is the closest we can restore.
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)

    def handler(signum, frame):
        if request:  # second signal while stopping: the old behaviour, now
            restore()
            signal.raise_signal(signum)
            return
        request.signum = signum

    for signum in signals:
        previous[signum] = signal.signal(signum, handler)
    try:
        yield request
    finally:
        restore()
