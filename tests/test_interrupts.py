"""Graceful stop: the signal handlers, and `python -m gan.train` stopped by SIGTERM / Ctrl-C."""

import os
import re
import signal
import threading
import time

import pytest

from conftest import start_cli, tiny_config, wait_for_file
from gan.training import interrupts


def test_a_signal_only_sets_the_request_and_handlers_are_restored():
    before = {s: signal.getsignal(s) for s in interrupts.STOP_SIGNALS}
    with interrupts.stop_requested() as request:
        assert not request
        os.kill(os.getpid(), signal.SIGTERM)  # would end pytest without the handler
        time.sleep(0.01)  # Python runs the handler at its next bytecode
        assert request and request.signum == signal.SIGTERM and request.name == "SIGTERM"
    assert {s: signal.getsignal(s) for s in interrupts.STOP_SIGNALS} == before


def test_a_second_ctrl_c_interrupts_at_once():
    # Python's own Ctrl-C handler as the previous one (a test runner's worker, e.g.
    # pytest-xdist's, may have set SIGINT to be ignored).
    outer = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            with interrupts.stop_requested() as request:
                signal.raise_signal(signal.SIGINT)
                assert request.name == "SIGINT"
                signal.raise_signal(signal.SIGINT)  # the previous handler: KeyboardInterrupt
                time.sleep(0.01)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, outer)


def test_outside_the_main_thread_nothing_is_installed():
    seen = []

    def body():
        with interrupts.stop_requested() as request:
            seen.append((bool(request), signal.getsignal(signal.SIGTERM)))

    before = signal.getsignal(signal.SIGTERM)
    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert seen == [(False, before)]


def test_exit_codes_follow_the_shell_convention():
    assert interrupts.exit_code(signal.SIGINT) == 130
    assert interrupts.exit_code(signal.SIGTERM) == 143


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stop_signal_saves_the_current_epoch_within_5s_and_the_rerun_loses_none(
        tmp_path, data_dir, signum):
    from gan.training import checkpoints, run as train_lib

    # No checkpoint on the cadence: the only one can come from the signal.
    config = tiny_config(tmp_path, data_dir, epochs=10**6, checkpoint_every=10**6,
                         save_every=50, steps_per_call=10, seed=5)
    args = [f"--{name}={getattr(config, name)}" for name in (
        "epochs", "checkpoint_every", "save_every", "steps_per_call", "data_dir", "image_dir",
        "checkpoint_dir", "log_every_secs", "seed")] + ["--noxla"]  # signals under test
    process = start_cli("gan.train", *args, log_path=tmp_path / "log")
    try:
        # compiled, training
        wait_for_file(os.path.join(config.image_dir, "generated_100.png"), process)
        signalled = time.time()
        process.send_signal(signum)
        while not checkpoints.list_checkpoints(config.checkpoint_dir):
            assert time.time() - signalled < 5, "no checkpoint within 5 s of the signal"
            time.sleep(0.01)
        assert process.wait(timeout=60) == 128 + signum
    finally:
        if process.poll() is None:
            process.kill()
    output = (tmp_path / "log").read_text()
    match = re.search(rf"stopped by {signum.name} at epoch (\d+)", output)
    assert match, output[-3000:]
    stopped = int(match.group(1))
    assert stopped > 100
    assert checkpoints.list_checkpoints(config.checkpoint_dir) == [
        os.path.join(config.checkpoint_dir, f"ckpt-{stopped}")]

    logs = []
    config.epochs = stopped + 5
    state = train_lib.train(config, log=logs.append)
    assert f"Resuming from step {stopped};" in " ".join(logs)  # 0 steps lost
    assert int(state.step.numpy()) == stopped + 5
