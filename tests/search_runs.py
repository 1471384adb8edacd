"""What a finished search left behind, read back for the tests: its MLflow runs and its Optuna study."""

from __future__ import annotations

import optuna
from mlflow.tracking import MlflowClient

from metaxl_tune.results.mlflow_filters import tags_equal
from metaxl_tune.search.driver.options import optuna_storage

DEMO = ["search", "--task", "ner", "--target", "tk", "--preset", "demo"]
"""The demo search's command, before the flags each test adds."""

MACHINERY_SIZES = ["--source-size", "64", "--max-length", "32"]
"""Flags that shrink a demo trial to 4 steps an epoch (the preset's 300 source sentences make 19)
on shorter sequences: for the searches whose test is about what runs and records the trials
(placement, faults, records), not about what they learn. Each such trial costs about a fifth
of the preset's; the search that shows the preset itself (test_search_cli.demo_search) keeps it."""

ONE_WORKER = ["--max-concurrent", "1"]
"""Trials one after another in one trial worker (Tune reuses it): for searches of trials a few
seconds long whose test is not about trials running side by side. A second worker costs its own
imports (torch, transformers, Ray Tune: about 8 s of CPU) for a few seconds of overlap."""


def trial_runs(client: MlflowClient, search: str):
    """(parent runs, trial runs) of ``search`` in the metaxl-tune experiment."""
    experiment = client.get_experiment_by_name("metaxl-tune")
    query = tags_equal({"metaxl.search": search})
    runs = client.search_runs([experiment.experiment_id], filter_string=query, max_results=1000)
    parents = [run for run in runs if run.data.tags.get("metaxl.role") == "search"]
    trials = [run for run in runs if run.data.tags.get("metaxl.role") == "trial"]
    return parents, trials


def study_of(directory, name: str) -> optuna.Study:
    """The Optuna study of search ``name`` whose storage folder is under ``directory``."""
    return optuna.load_study(study_name=name, storage=optuna_storage(directory / "metaxl-searches" / name))
