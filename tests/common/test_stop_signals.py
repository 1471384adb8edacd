"""SIGTERM and SIGHUP stop a command as Ctrl-C does (common/stop_signals.py), sent from outside
the process; after a hangup, output to the terminal that is gone is dropped, not an error."""

from __future__ import annotations

import os
import pty
import signal
import subprocess
import sys

import pytest

from metaxl_tune.common.stop_signals import exit_status
from processes import read_until

# A command that waits in the main thread, as `train` does in an epoch, and then prints its
# one line and a long one (as a progress line would) once it is stopped.
COMMAND = r"""
import sys, threading
from pathlib import Path
from metaxl_tune.common.stop_signals import as_keyboard_interrupt, exit_status

with as_keyboard_interrupt():
    try:
        # Inside the try: the signal may come the moment the line is out, before the wait.
        print("waiting", flush=True)
        threading.Event().wait(300)
    except KeyboardInterrupt:
        print("interrupted; what was kept and how to go on", flush=True)
        print("x" * 100_000, file=sys.stderr, flush=True)
        Path(sys.argv[1]).write_text("answered")
        sys.exit(exit_status())
"""


def test_each_stop_signal_has_the_exit_status_a_shell_gives_it():
    assert [exit_status(name) for name in ("SIGINT", "SIGTERM", "SIGHUP")] == [130, 143, 129]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_stop_signal_is_answered_as_ctrl_c_with_128_plus_its_number(tmp_path, sig):
    process = subprocess.Popen([sys.executable, "-c", COMMAND, str(tmp_path / "answered")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    read_until(process, "waiting", timeout=60)
    os.killpg(process.pid, sig)
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 128 + sig
    assert out.decode().splitlines() == ["interrupted; what was kept and how to go on"]
    assert (tmp_path / "answered").read_text() == "answered"


def test_after_a_hangup_writes_to_the_terminal_that_is_gone_are_dropped(tmp_path):
    master, terminal = pty.openpty()
    process = subprocess.Popen([sys.executable, "-c", COMMAND, str(tmp_path / "answered")],
                               stdout=terminal, stderr=terminal, start_new_session=True)
    os.close(terminal)
    seen = b""
    while b"waiting" not in seen:
        seen += os.read(master, 1024)
    os.close(master)  # the terminal hangs up: later writes to it fail with EIO
    os.killpg(process.pid, signal.SIGHUP)
    status = process.wait(timeout=60)
    # The stop ran to its end through the dead terminal: its file is written after both lines.
    assert (tmp_path / "answered").read_text() == "answered"
    # 129 from the command; or killed by SIGHUP, seen once in a suite run in 2 workers and once in
    # 60 runs of this test on loaded cores: a second SIGHUP that came after the stop had put the
    # default action back (its sender not found; pid_max here is 32768, so a pid that another
    # test signals can be reused). A shell reports both as 129: ended by SIGHUP.
    assert status in (129, -signal.SIGHUP)
