"""quiet_output: without --verbose the libraries' own fault reports are not printed; with it they are.

Each case runs in a fresh interpreter (the switch changes process-wide state) and has the real
sources print what they print during a fault: Ray's raylet paragraph through Ray's own printing
function, Tune's "Trial task failed" error with its traceback through Tune's logger, Optuna's
warning for a redone epoch, MLflow's INFO log."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SOURCES = r"""
import logging, sys, warnings
from metaxl_tune.search.faults.quiet_output import quiet_foreign_output

quiet_foreign_output(verbose=sys.argv[1] == "verbose")
import ray._private.worker as ray_worker

ray_worker.print_worker_logs(
    {"lines": ["A worker died or was killed while executing a task by an unexpected system error."],
     "pid": "raylet", "is_err": False}, sys.stdout)
try:
    raise RuntimeError("The actor died unexpectedly before finishing this task.")
except RuntimeError as error:
    logging.getLogger("ray.tune.execution.tune_controller").error("Trial task failed for trial t1", exc_info=error)
logging.getLogger("ray.tune.utils.util").warning("The `process_trial_result` operation took 3 s, which may be a performance bottleneck.")
logging.getLogger("ray.train._internal.syncer").error("Syncing failed", exc_info=PermissionError(13, "Permission denied"))
logging.getLogger("ray.tune.execution.experiment_state").error(
    "Saving experiment state to storage at '/s/e' failed with exception: ", exc_info=PermissionError(13, "Permission denied"))
import optuna

study = optuna.create_study()
trial = study.ask()
trial.report(1.0, step=1)
trial.report(1.0, step=1)
logging.getLogger("mlflow.store.db.utils").info("Creating initial MLflow database tables...")
import os

print("mlflow url lines:", os.environ.get("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "shown"))
"""
FOREIGN = ("A worker died", "Trial task failed", "Traceback", "performance bottleneck", "Syncing failed",
           "The reported value is ignored", "A new study created", "Creating initial MLflow database tables")


def printed(mode: str) -> str:
    env = {key: value for key, value in os.environ.items() if key != "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"}
    # mlflow first, as in the CLI: its loggers get their handler when it is imported.
    result = subprocess.run([sys.executable, "-c", "import mlflow\n" + SOURCES, mode], capture_output=True,
                            text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def quiet() -> str:
    return printed("quiet")


def test_without_verbose_none_of_the_libraries_fault_reports_is_printed(quiet):
    output = quiet
    assert [mark for mark in FOREIGN if mark in output] == [], output
    assert "\x1b[" not in output
    assert "mlflow url lines: true" in output


def test_without_verbose_a_failed_save_of_the_search_state_is_still_said_on_one_line(quiet):
    saved = [line for line in quiet.splitlines() if "Saving experiment state" in line]
    assert len(saved) == 1 and saved[0].endswith(
        "Saving experiment state to storage at '/s/e' failed with exception: PermissionError: [Errno 13] Permission denied")


def test_verbose_prints_every_one_of_them():
    output = printed("verbose")
    assert [mark for mark in FOREIGN if mark not in output] == [], output
    assert "\x1b[" in output  # the raylet's coloured prefix
    assert "mlflow url lines: shown" in output


NATIVE = r"""
import logging, os, sys
from pathlib import Path
from metaxl_tune.search.faults.quiet_output import NativeLines

# Bound to sys.stderr when made, as Ray's and Tune's handlers are (at import).
logger = logging.getLogger("made.before")
logger.addHandler(logging.StreamHandler())
logger.propagate = False
native = NativeLines(Path(sys.argv[1]))
os.write(2, b"[2026-12-07 03:30:12,893 E 5364 6040] rpc_client.h:204: Failed to connect to GCS within 60 seconds.\n")
print("python's own stderr", file=sys.stderr)
logger.error("a handler made before")
native.restore()
os.write(2, b"native, once Ray is shut down\n")
logger.error("the handler, once Ray is shut down")
"""


def test_ray_native_lines_go_to_a_log_file_while_python_keeps_the_real_stderr(tmp_path):
    log = tmp_path / "logs" / "metaxl-driver.err"
    result = subprocess.run([sys.executable, "-c", NATIVE, str(log)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == ["python's own stderr", "a handler made before", "native, once Ray is shut down",
                                          "the handler, once Ray is shut down"]
    assert "Failed to connect to GCS within 60 seconds" in log.read_text()
