"""The signals that stop a command, and what every command does with them.

Ctrl-C (SIGINT), SIGTERM (a scheduler, ``docker stop``, ``timeout``, Slurm at a time limit) and
SIGHUP (a closed terminal, a dropped ssh session) all ask for the same thing: stop, keep what
can be kept, say on one line how to go on. Python answers only SIGINT (KeyboardInterrupt); the
other two would end the process at once, with no line and nothing saved. ``train`` maps them to
KeyboardInterrupt (``as_keyboard_interrupt``); ``search`` and ``ablate`` to Tune's graceful stop
(search/faults/interrupt.py). A stopped command exits with 128 + the signal's number, as a shell
reports a process that the signal ended: 130 after Ctrl-C, 143 after SIGTERM, 129 after SIGHUP.

A hung-up terminal refuses every later write (EIO): the first progress line or the stop's own
line would raise in the middle of the stop. After a SIGHUP, output to a terminal that is gone
is sent to /dev/null instead (``write_nowhere_if_terminal_hung_up``); a pipe or file still gets it.
"""

from __future__ import annotations

import contextlib
import os
import signal
from types import FrameType
from typing import Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
INTERRUPTED_STATUSES = frozenset(128 + int(sig) for sig in STOP_SIGNALS)
"""Exit statuses of a command stopped by one of STOP_SIGNALS."""

_first: list[str] = []


def forget() -> None:
    """Start a command afresh (tests run several commands in one process)."""
    _first.clear()


def note(signal_name: str) -> None:
    """Record a stop signal (the first one decides the exit status)."""
    if not _first:
        _first.append(signal_name)


def received() -> str | None:
    """The first stop signal this process received, None when none was."""
    return _first[0] if _first else None


def exit_status(signal_name: str | None = None) -> int:
    """128 + the number of ``signal_name`` (default: the first stop signal received; a
    KeyboardInterrupt with no signal recorded is Ctrl-C)."""
    name = signal_name or received() or "SIGINT"
    return 128 + int(signal.Signals[name])


def write_nowhere_if_terminal_hung_up() -> None:
    """Point stdout and stderr at /dev/null where they are a terminal that has hung up.

    A zero-byte write tells: it succeeds on a live terminal, a pipe or a file, and fails with
    EIO on a terminal after its hangup (``isatty`` cannot tell: a hung-up terminal answers its
    ioctl with ENOTTY)."""
    for fd in (1, 2):
        try:
            os.write(fd, b"")
        except OSError:
            nowhere = os.open(os.devnull, os.O_WRONLY)
            os.dup2(nowhere, fd)
            os.close(nowhere)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    name = signal.Signals(signum).name
    note(name)
    if signum == signal.SIGHUP:
        write_nowhere_if_terminal_hung_up()
    raise KeyboardInterrupt


@contextlib.contextmanager
def as_keyboard_interrupt() -> Iterator[None]:
    """Within the block, each of STOP_SIGNALS raises KeyboardInterrupt in the main thread, as
    Ctrl-C does (each time, so a second one stops a wait that the first left running)."""
    forget()
    previous = {sig: signal.signal(sig, _raise_interrupt) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
