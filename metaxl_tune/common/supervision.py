"""A driver run as the child of a small supervisor, which closes what the driver could not.

A Ray driver cannot outlive its raylet: when the raylet ends (Slurm's time limit sends SIGTERM
to every process of a job, in no fixed order), Ray's core worker ends the driver from a native
thread with ``_Exit(1)``. No Python runs, no ``atexit``: the MLflow runs and Optuna trials stay
RUNNING, the lock file stays, no line says how to resume. No thread of the driver can win that
race (search/faults/ray_loss.py wins it only when the driver hears the signal first).

So ``search`` runs its driver as a child (``supervise``). The supervisor is the process the user
started: it keeps the pid they know (the lock names it, ``user_pid``), shares the child's
streams, process group and session, imports nothing heavy, and does three things:

- **Passes on a stop signal sent to it alone** (``kill PID``). One sent to the whole group
  (Ctrl-C in a terminal, ``kill -TERM -PGID``) or to every process reaches the child directly,
  and passing it on would be a second signal, which stops the search at once instead of
  gracefully. The child's ``signal.set_wakeup_fd`` is a pipe to the supervisor: Python's C-level
  handler writes each signal's number there the moment the child gets it, without the GIL. A
  signal the child has not reported within ``HEARD_WITHIN_S`` is passed on.
- **Closes the records the child left open.** The child says when it has made the search's
  records (``tell_opened``, with what is needed to find them) and when it has closed them
  (``tell_closed``). A child that ends between the two (Ray's ``_Exit``, SIGKILL from the OOM
  killer) has its records closed by the ``Ending`` the caller gives (the driver's own closing),
  and the supervisor exits with 128 + the stop signal's number, as the driver would have.
- **Ends the child with itself**: the child gets SIGTERM when the supervisor dies
  (``PR_SET_PDEATHSIG``), so ``kill -9`` of the supervisor stops the search gracefully instead
  of orphaning it.

The child finds its end of the protocol in ``SUPERVISOR_ENV`` (two inherited descriptors); a
driver run without a supervisor (in-process, tests, notebooks) tells nothing.
"""

from __future__ import annotations

import ctypes
import json
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from metaxl_tune.common.stop_signals import STOP_SIGNALS, write_nowhere_if_terminal_hung_up

SUPERVISOR_ENV = "METAXL_TUNE_SUPERVISOR"
"""In the child: ``WAKE_FD,MESSAGE_FD,SUPERVISOR_PID``."""
HEARD_WITHIN_S = 1.5
"""How long a signal the supervisor got may take to show in the child before it is passed on
(the child's C handler writes at once; a loaded machine may schedule it late)."""
LATE_SIGNAL_S = 1.0
"""How long a supervisor whose child ended by itself with records open waits for the stop
signal that may have ended the child (a job's SIGTERM reaches Ray's processes first)."""
_POLL_S = 0.1
_PR_SET_PDEATHSIG = 1
_STOP_NUMBERS = frozenset(int(sig) for sig in STOP_SIGNALS)


class Ending(Protocol):
    """What the supervisor does with records its child left open."""

    def close(self, opened: dict[str, Any]) -> None:
        """Close the records ``opened`` describes (what the child told in ``tell_opened``)."""

    def say_stopped(self, opened: dict[str, Any], reason: str) -> None:
        """The stop's one line; ``reason`` names the signal, or the child's exit status."""


# ---- the child's side ---------------------------------------------------------------------------

_channel_read: list[tuple[int, int, int] | None] = []


def _channel() -> tuple[int, int, int] | None:
    """The child's descriptors and the supervisor's pid. Taken out of the environment on first
    use, so that no process this one starts (Ray's, a worker's subprocess) writes to descriptors
    it does not have."""
    if not _channel_read:
        value = os.environ.pop(SUPERVISOR_ENV, "")
        try:
            wake, message, supervisor = (int(part) for part in value.split(","))
            _channel_read.append((wake, message, supervisor))
        except ValueError:
            _channel_read.append(None)
    return _channel_read[0]


def user_pid() -> int:
    """The pid the user started: the supervisor's in a supervised driver, else this process's."""
    channel = _channel()
    return channel[2] if channel else os.getpid()


def report_signals() -> None:
    """In the child, from the main thread, first thing: every signal with a Python handler is
    reported to the supervisor as it arrives."""
    channel = _channel()
    if channel is not None:
        os.set_blocking(channel[0], False)
        signal.set_wakeup_fd(channel[0], warn_on_full_buffer=False)


def _tell(message: dict[str, Any]) -> None:
    channel = _channel()
    if channel is None:
        return
    try:
        os.write(channel[1], (json.dumps(message) + "\n").encode())
    except OSError:
        pass  # the supervisor is gone; the parent-death signal stops this process


def tell_opened(opened: dict[str, Any]) -> None:
    """The search's records exist now; ``opened`` is what finds them (JSON-able, kept off disk:
    it may hold a tracking URI's credentials)."""
    _tell({"opened": opened})


def tell_closed() -> None:
    """The records are closed: nothing is left for the supervisor to do."""
    _tell({"closed": True})


# ---- the supervisor's side ----------------------------------------------------------------------

@dataclass
class _Heard:
    """Stop signals and what the child said, as they arrive."""

    own: list[tuple[int, float]] = field(default_factory=list)
    """Stop signals the supervisor got and has not matched or passed on yet."""
    child: list[tuple[int, float]] = field(default_factory=list)
    """Stop signals the child reported and no signal of the supervisor's has matched yet."""
    first: int | None = None
    """The first stop signal either process got: it decides the exit status."""
    opened: dict[str, Any] | None = None
    closed: bool = False
    _text: bytes = b""

    def signals(self, numbers: bytes, *, by_child: bool) -> None:
        now = time.monotonic()
        for number in numbers:
            if number not in _STOP_NUMBERS:
                continue
            if self.first is None:
                self.first = number
            (self.child if by_child else self.own).append((number, now))

    def messages(self, data: bytes) -> None:
        self._text += data
        *lines, self._text = self._text.split(b"\n")
        for line in lines:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if isinstance(message, dict) and isinstance(message.get("opened"), dict):
                self.opened, self.closed = message["opened"], False
            elif isinstance(message, dict) and message.get("closed"):
                self.closed = True

    def to_pass_on(self) -> list[int]:
        """Signals of the supervisor's that the child has not heard within ``HEARD_WITHIN_S``."""
        now = time.monotonic()
        # A report older than the window belongs to a signal sent to the child alone.
        self.child = [(number, at) for number, at in self.child if now - at < 2 * HEARD_WITHIN_S]
        late, kept = [], []
        for number, at in self.own:
            match = next((entry for entry in self.child if entry[0] == number), None)
            if match is not None:
                self.child.remove(match)
            elif now - at >= HEARD_WITHIN_S:
                late.append(number)
            else:
                kept.append((number, at))
        self.own = kept
        return late


def _die_with_parent() -> None:
    # In the child, between fork and exec: SIGTERM when the supervisor dies, however it dies.
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)


def _read_all(descriptor: int) -> bytes:
    chunks = []
    while True:
        try:
            chunk = os.read(descriptor, 65536)
        except (BlockingIOError, InterruptedError):
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def supervise(argv: list[str], ending: Ending, *, env: dict[str, str] | None = None) -> int:
    """Run ``argv`` as the supervised child; return the status to exit with (a child ended by a
    signal that left nothing open ends this process by the same signal)."""
    own_read, own_write = os.pipe()
    wake_read, wake_write = os.pipe()
    message_read, message_write = os.pipe()
    for descriptor in (own_read, own_write, wake_read, message_read):
        os.set_blocking(descriptor, False)
    heard = _Heard()
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in STOP_SIGNALS}
    signal.set_wakeup_fd(own_write, warn_on_full_buffer=False)
    child_env = {**(os.environ if env is None else env),
                 SUPERVISOR_ENV: f"{wake_write},{message_write},{os.getpid()}"}
    try:
        child = subprocess.Popen(argv, env=child_env, pass_fds=(wake_write, message_write),
                                 preexec_fn=_die_with_parent)
    finally:
        os.close(wake_write)
        os.close(message_write)
    sources = {own_read: "own", wake_read: "child", message_read: "messages"}
    while True:
        try:
            ready, _, _ = select.select(list(sources), [], [], _POLL_S)
        except InterruptedError:
            ready = []
        for descriptor in ready:
            data = _read_all(descriptor)
            if sources[descriptor] == "messages":
                heard.messages(data)
            else:
                heard.signals(data, by_child=sources[descriptor] == "child")
        if child.poll() is not None:
            break
        for number in heard.to_pass_on():
            try:
                os.kill(child.pid, number)
            except ProcessLookupError:
                pass
    heard.messages(_read_all(message_read))
    heard.signals(_read_all(wake_read), by_child=True)
    status = child.returncode
    if heard.opened is not None and not heard.closed:
        status = _close_left_records(heard, ending, status, own_read)
    else:
        signal.set_wakeup_fd(-1)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if status < 0:
            _end_by_signal(-status)
    return status if status >= 0 else 128 - status


def _close_left_records(heard: _Heard, ending: Ending, status: int, own_read: int) -> int:
    """The child ended with its records open: close them, say so, and the status to exit with."""
    try:
        ending.close(heard.opened)
    except Exception as error:  # noqa: BLE001 - the line and the status below still come
        message = str(error).splitlines()[0][:200] if str(error) else ""
        print(f"warning: the driver ended with its records open and they could not be closed "
              f"({type(error).__name__}: {message}); --resume closes them", file=sys.stderr, flush=True)
    # A stop signal that arrived while the records were closed counts too: the child may have
    # ended before the signal that ended the job reached this process. A child that ended by
    # itself, with none heard yet, gets a moment for it.
    heard.signals(_read_all(own_read), by_child=False)
    if heard.first is None and status >= 0:
        select.select([own_read], [], [], LATE_SIGNAL_S)
        heard.signals(_read_all(own_read), by_child=False)
    if heard.first == signal.SIGHUP:
        write_nowhere_if_terminal_hung_up()
    if heard.first is not None:
        reason, final = signal.Signals(heard.first).name, 128 + heard.first
    elif status < 0:
        reason, final = f"{signal.Signals(-status).name} of its driver", 128 - status
    else:
        reason, final = f"its driver ended with status {status}", status
    try:
        ending.say_stopped(heard.opened, reason)
    except Exception:  # noqa: BLE001 - the status still comes
        pass
    return final


def _end_by_signal(number: int) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    signal.signal(number, signal.SIG_DFL)
    os.kill(os.getpid(), number)
