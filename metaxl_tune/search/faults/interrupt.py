"""Ctrl-C, SIGTERM and SIGHUP during a search or ablation: a clean stop the first time, at once the second.

Tune has a graceful stop of its own: its loop ends, the experiment state is written one last
time with the running trials still RUNNING and pointing at their last epoch checkpoint, and
their workers are stopped without telling the searcher or the callbacks that they ended. That
is exactly the state ``Tuner.restore`` continues from. The driver then closes the Optuna trials
(FAIL, ``interrupted``); the resumed trials report into new ones (ending.py). Tune wires it to
SIGINT only; here it is reached through its SIGUSR1 handler (with ``TUNE_DISABLE_SIGINT_HANDLER``)
so that SIGTERM (a scheduler, ``docker stop``, a cluster manager) and SIGHUP (a closed terminal,
a dropped ssh session) stop a search the same way, and so that the caller knows the search was
interrupted rather than over (Tune's ``fit`` returns normally in both cases). The command then
exits with 128 + the signal's number (common/stop_signals.py).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Callable

from metaxl_tune.common import stop_signals

SIGNALS = stop_signals.STOP_SIGNALS
EXIT_CODE = 130
"""Exit status after Ctrl-C (128 + SIGINT, as a shell reports it); after another stop signal,
``stop_signals.exit_status()``."""
# Tune's last save of the experiment state logs a failed copy of it with its traceback
# (``experiment_state.py: wait_for_sync``); during a stop this happens while trials and the
# syncer are being torn down. The failure is still said, on one line.
STOPPING_LOGGERS = ("ray.tune.execution.experiment_state",)


class OneLineErrors(logging.Filter):
    """Turns a log record's traceback into ``ExceptionType: message`` at the end of its line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            record.msg = f"{record.getMessage().rstrip(': ')}: {type(error).__name__}: {error}".replace("\n", " ")
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


def resume_hint(command: str, name: str, storage: str, *, tracking_uri: str | None = None) -> str:
    """The resume command; with the ``--tracking-uri`` to pass again when ``tracking_uri`` has
    credentials this environment does not give (tracking_uri.resume_credentials)."""
    from metaxl_tune.results.tracking_uri import resume_credentials

    return f"metaxl-tune {command} --name {name} --resume --storage {storage}{resume_credentials(tracking_uri)}"


def stopped_line(command: str, name: str, storage: str, options_file: str, *, tracking_uri: str | None = None) -> str:
    """What to do after a stop at once: resume, or start again when nothing was saved yet."""
    if (Path(storage).resolve() / name / options_file).is_file():
        hint = resume_hint(command, name, str(Path(storage).resolve()), tracking_uri=tracking_uri)
        return f"interrupted; resume with: {hint}"
    return f"interrupted before the {command} started; nothing to resume"


class Interruption:
    """Installed from the moment a search connects to Ray until it has shut Ray down;
    ``signal_name`` is set once a stop was asked. Before Tune's loop runs there is nothing to
    save, and a signal stops at once (KeyboardInterrupt)."""

    def __init__(self, *, say: Callable[[str], None] | None = None):
        self.say = say or (lambda text: print(text, file=sys.stderr, flush=True))
        self.signal_name: str | None = None
        self._previous: dict[int, object] = {}
        self._tune_logger = logging.getLogger("ray.tune.tune")
        self._tune_level = self._tune_logger.level
        self._one_line = OneLineErrors()

    @property
    def interrupted(self) -> bool:
        return self.signal_name is not None

    def __enter__(self) -> "Interruption":
        return self.install()

    def __exit__(self, *exc_info) -> None:
        self.restore()

    def install(self) -> "Interruption":
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
        stop_signals.forget()
        # Tune installs its stop handler on SIGUSR1 when its loop starts; until then (and after
        # a previous search in this process) there is no graceful stop to ask for.
        signal.signal(signal.SIGUSR1, signal.SIG_DFL)
        self._previous = {sig: signal.signal(sig, self._handle) for sig in SIGNALS}
        return self

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        signal.signal(signal.SIGUSR1, signal.SIG_DFL)
        self._tune_logger.setLevel(self._tune_level)
        for name in STOPPING_LOGGERS:
            logging.getLogger(name).removeFilter(self._one_line)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if signum == signal.SIGHUP:
            stop_signals.write_nowhere_if_terminal_hung_up()
        stop_signals.note(name)
        if self.signal_name is not None:
            self.say(f"{name} again: stopping at once (trials resume from their last saved checkpoint)")
            raise KeyboardInterrupt
        self.signal_name = name
        tune_stop = signal.getsignal(signal.SIGUSR1)
        if not callable(tune_stop):
            # Tune is still setting up: nothing runs yet, so there is nothing to save first.
            raise KeyboardInterrupt
        self.say(f"{name}: starting no more trials, saving the search state and stopping the running trials "
                 "(they resume from their last epoch checkpoint); press Ctrl-C again to stop at once")
        # Tune's own lines (the unfinished trials, Tuner.restore) would not say how to resume
        # a search; the CLI's line does.
        self._tune_logger.setLevel(logging.CRITICAL)
        for name in STOPPING_LOGGERS:
            logging.getLogger(name).addFilter(self._one_line)
        tune_stop(signum, frame)
