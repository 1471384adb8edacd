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

A fatal problem still reaches the user: it ends ``Tuner.fit`` with an exception, which the
command prints as one line.
"""

from __future__ import annotations

import logging
import os
import warnings

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


def quiet_foreign_output(*, verbose: bool) -> None:
    """Switch the libraries' own fault reports off for this process, unless ``verbose``."""
    if verbose:
        return
    os.environ.setdefault(MLFLOW_URL_LINES, "true")
    for name, level in SILENCED_LOGGERS.items():
        logging.getLogger(name).setLevel(level)
    from metaxl_tune.search.interrupt import OneLineErrors

    state = logging.getLogger(EXPERIMENT_STATE_LOGGER)
    state.setLevel(logging.ERROR)
    if not any(isinstance(existing, OneLineErrors) for existing in state.filters):
        state.addFilter(OneLineErrors())
    # Optuna's own switch: it sets its logger up (to INFO) the first time it is used.
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", message=REDONE_EPOCH_WARNING, category=UserWarning)
    import ray._private.worker as ray_worker

    ray_worker._worker_logs_enabled = False
