"""Which commands run their Ray driver under a supervisor (cli/launch.py, common/supervision.py)."""

from __future__ import annotations

import subprocess
import sys

from metaxl_tune.cli.launch import supervised
from metaxl_tune.common.supervision import SUPERVISOR_ENV


def test_commands_that_drive_ray_run_under_a_supervisor_and_others_and_help_do_not(monkeypatch):
    monkeypatch.delenv(SUPERVISOR_ENV, raising=False)
    assert supervised(["search", "--preset", "demo"]) and supervised(["search", "--name", "s", "--resume"])
    assert supervised(["ablate", "--study", "methods"]) and supervised(["best", "--name", "s", "--compare"])
    assert supervised(["best", "--name", "s", "--rerun", "--seeds", "3"]) and not supervised(["best", "--name", "s"])
    assert not supervised(["search", "--help"]) and not supervised(["train", "--preset", "demo"])
    assert not supervised(["--help"]) and not supervised([])


def test_the_supervised_driver_itself_runs_the_command(monkeypatch):
    monkeypatch.setenv(SUPERVISOR_ENV, "5,6,7")
    assert not supervised(["search", "--preset", "demo"])


def test_the_supervisor_starts_lean():
    # What the supervisor imports for itself: no torch, Ray, MLflow or Optuna unless it has to
    # close a search's records.
    code = ("import sys; import metaxl_tune.cli.launch as launch; "
            "from metaxl_tune.search.driver.supervised_ending import SupervisedEnding; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'ray', 'mlflow', 'optuna', 'typer'}))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


def test_the_command_line_loads_torch_only_to_train():
    # `best`, `report`, `sync`, `ui` and a command refused at its flags start in a fraction of a
    # second: the app and every command's module load without torch or transformers (about 2 s
    # on the reference machine). Training, and a search's fit check, load them when they run.
    from processes import modules_loaded

    assert modules_loaded("import metaxl_tune.cli.app", ("torch", "transformers")) == []
