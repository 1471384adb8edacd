"""A search's record in MLflow, read whole: every run's info, params, tags and metric histories.

``search_record`` is for "nothing changed" (compare two reads of one store, field by field,
timestamps included); ``record_content`` for "the same record" in two stores (what the runs
say, without the ids and times that each store gives its own).
"""

from __future__ import annotations

from typing import Any

from mlflow.tracking import MlflowClient

from metaxl_tune.results.mlflow_filters import tags_equal

INFO_FIELDS = ("run_id", "run_name", "experiment_id", "status", "start_time", "end_time", "lifecycle_stage",
               "artifact_uri")


def _key(run) -> str:
    return "parent" if run.data.tags.get("metaxl.role") == "search" else run.data.tags["metaxl.trial_id"]


def search_record(uri: str, name: str) -> dict[str, dict[str, Any]]:
    """Run key ("parent", or the trial id) -> {info, params, tags, metrics: key -> [(step, timestamp, value)]}."""
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("metaxl-tune")
    runs = client.search_runs([experiment.experiment_id], tags_equal({"metaxl.search": name}), max_results=1000)
    record = {}
    for run in runs:
        record[_key(run)] = {
            "info": {field: getattr(run.info, field) for field in INFO_FIELDS},
            "params": dict(run.data.params),
            "tags": dict(run.data.tags),
            "metrics": {key: sorted((entry.step, entry.timestamp, entry.value)
                                    for entry in client.get_metric_history(run.info.run_id, key))
                        for key in run.data.metrics},
        }
    return record


def record_content(record: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """What each run says: status, params, the project's tags (``metaxl.*``) and each metric's
    (step, value) history; not the ids, times and MLflow's own bookkeeping tags."""
    return {
        key: {
            "status": run["info"]["status"],
            "run_name": run["info"]["run_name"],
            "params": run["params"],
            "tags": {tag: value for tag, value in run["tags"].items() if tag.startswith("metaxl.")},
            "metrics": {metric: [(step, value) for step, _, value in history]
                        for metric, history in run["metrics"].items()},
        }
        for key, run in record.items()
    }
