"""What a search prints without ``--verbose``: our one-line messages, not Ray's, MLflow's or Optuna's.

Each fault a search survives is said once, by us, saying what happened, what was kept and what
happens next: a lost worker or a failed trial (callbacks.ProgressCallback), unwritable storage
(persistence.StorageWatch), an unreachable tracking server (tracking_queue), a trial resumed
by ``--resume`` (ProgressCallback). The libraries say the same things again, as paragraphs and
tracebacks; those are switched off here, unless ``--verbose`` asks for everything:

- The raylet's "A worker died or was killed ..." paragraph (ANSI-coloured). The driver's
  error listener thread prints it (``ray._private.worker.listen_error_messages`` calls
  ``print_worker_logs``): a Python print, not a logger and not the C++ core, so neither logging
  levels nor ``RAY_BACKEND_LOG_LEVEL`` (which sets what the raylet and workers write to their
  log files) reach it. Ray's own debugger silences it the same way (``ray.util.rpdb``). Worker
  output is already not sent to the driver (``log_to_driver=False``, cluster.connect), so only
  these error messages are affected; their content reaches us as the trial's error.
- Tune's "Trial task failed for trial ..." error with the ``ActorDiedError`` traceback, and its
  hints that an operation "may be a performance bottleneck" (``ray.tune.execution.tune_controller``,
  ``ray.tune.utils.util``).
- Ray Train's syncer tracebacks (``PermissionError``) while a trial folder is unwritable
  (``ray.train._internal.syncer``, ``ray.train._internal.storage``).
- A failed save of Tune's experiment state stays said, on one line without its traceback
  (``ray.tune.execution.experiment_state``, interrupt.OneLineErrors): a search whose state was
  not saved cannot be resumed from it, and no line of ours says so. Its "performance
  bottleneck" hint is left out.
- MLflow's ``🏃 View run ...`` and ``🧪 View experiment ...`` lines, written to stdout for every
  run ended on a tracking server (``MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT``), and its INFO log
  (creating the database tables).
- Optuna's INFO log ("A new study created ...") and its warning when a restarted trial reports
  an epoch it reported before ("The reported value is ignored ..."): restarts.py and the
  restart line say what happens to redone epochs.
- The lines of Ray's native core worker in the driver (``[2026-01-01 10:00:00,000 E 123 456]
  core_worker.cc:609: ...`` when it loses objects, "Failed to connect to GCS within 60 seconds"):
  written by C++ straight to file descriptor 2, past Python and its logging, mostly when a stop
  takes Ray's own processes with it (ray_loss.py says that on its own line). While the driver
  runs Ray they go to a file in Ray's session log folder (``NativeLines``); Python's own
  ``sys.stderr``, and the logging handlers that write to it, keep the real stderr.

A fatal problem still reaches the user: it ends ``Tuner.fit`` with an exception, which the
command prints as one line.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path
from typing import TextIO

import optuna

SILENCED_LOGGERS = {
    "ray.tune.execution.tune_controller": logging.CRITICAL,
    "ray.tune.utils.util": logging.ERROR,
    "ray.train._internal.syncer": logging.CRITICAL,
    "ray.train._internal.storage": logging.CRITICAL,
    "mlflow": logging.WARNING,
}
"""Logger -> the lowest level still shown without --verbose."""
EXPERIMENT_STATE_LOGGER = "ray.tune.execution.experiment_state"
REDONE_EPOCH_WARNING = r"The reported value is ignored because this `step=\S+` is already reported"
MLFLOW_URL_LINES = "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"


def quiet_mlflow_output() -> None:
    """MLflow's ``🏃 View run`` and ``🧪 View experiment`` lines off, for a command that ends runs
    on a tracking server (a search, ``sync``)."""
    os.environ.setdefault(MLFLOW_URL_LINES, "true")


def quiet_foreign_output(*, verbose: bool) -> None:
    """Switch the libraries' own fault reports off for this process, unless ``verbose``."""
    if verbose:
        return
    quiet_mlflow_output()
    for name, level in SILENCED_LOGGERS.items():
        logging.getLogger(name).setLevel(level)
    from metaxl_tune.search.faults.interrupt import OneLineErrors

    state = logging.getLogger(EXPERIMENT_STATE_LOGGER)
    state.setLevel(logging.ERROR)
    if not any(isinstance(existing, OneLineErrors) for existing in state.filters):
        state.addFilter(OneLineErrors())
    # Optuna's own switch: it sets its logger up (to INFO) the first time it is used.
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", message=REDONE_EPOCH_WARNING, category=UserWarning)
    import ray._private.worker as ray_worker

    ray_worker._worker_logs_enabled = False


class NativeLines:
    """File descriptor 2 sent to ``path`` (native writers: Ray's C++ core worker) while Python's
    ``sys.stderr`` writes to a duplicate of the real one; ``restore`` puts both back. Nothing is
    moved when ``sys.stderr`` does not write to descriptor 2 (a test's capture)."""

    def __init__(self, path: Path):
        self._saved: TextIO | None = None
        self._real: int | None = None
        try:
            if sys.stderr.fileno() != 2:
                return
        except (AttributeError, OSError, ValueError):
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        sink = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        sys.stderr.flush()
        self._real = os.dup(2)
        os.dup2(sink, 2)
        os.close(sink)
        self._saved = sys.stderr
        sys.stderr = os.fdopen(os.dup(self._real), "w", buffering=1, encoding=self._saved.encoding,
                               errors=self._saved.errors)
        _repoint_handlers(self._saved, sys.stderr)

    def restore(self) -> None:
        if self._saved is None or self._real is None:
            return
        replacement = sys.stderr
        replacement.flush()
        os.dup2(self._real, 2)
        os.close(self._real)
        sys.stderr = self._saved
        _repoint_handlers(replacement, self._saved)
        replacement.close()
        self._saved = self._real = None


def _repoint_handlers(old: TextIO, new: TextIO) -> None:
    """Logging handlers that write to ``old`` (bound when they were made) write to ``new``."""
    loggers = [logging.getLogger()] + [logger for logger in logging.Logger.manager.loggerDict.values()
                                       if isinstance(logger, logging.Logger)]
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is old:
                handler.setStream(new)
