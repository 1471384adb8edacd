"""What a finished search left behind, read back for the tests: its MLflow runs and its Optuna study."""

from __future__ import annotations

import optuna
from mlflow.tracking import MlflowClient

from metaxl_tune.results.mlflow_filters import tags_equal
from metaxl_tune.search.driver.options import optuna_storage

DEMO = ["search", "--task", "ner", "--target", "tk", "--preset", "demo"]
"""The demo search's command, before the flags each test adds."""


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
