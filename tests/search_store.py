"""A finished search in a real sqlite MLflow store, written the way the search runner writes it:
five searched parameters stored as MLflow params (str of each RunConfig value)."""

from __future__ import annotations

from pathlib import Path

from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from metaxl_tune.config import RunConfig

NAME = "wide-search"
SEARCHED = ("meta_lr", "rtn_bottleneck", "rtn_layers", "source", "rtn_detach_input")
# Params as MLflow stores a trial's RunConfig (str of each value), and what a cell shows.
TRIALS = [
    ("5ee49d56", {"meta_lr": "2.2573e-05", "rtn_bottleneck": "32", "rtn_layers": "[0, 'last']", "source": "related",
                  "rtn_detach_input": "True"}, 28.43),
    ("8aa8b10b", {"meta_lr": "0.00068594164113287", "rtn_bottleneck": "16", "rtn_layers": "['last']",
                  "source": "related", "rtn_detach_input": "False"}, 28.5),
    ("189f403f", {"meta_lr": "0.000443", "rtn_bottleneck": "8", "rtn_layers": "['middle']", "source": "en",
                  "rtn_detach_input": "False"}, 25.0),
]
SHOWN = {"5ee49d56": ("2.3e-5", "32", "emb+last", "related", "true"),
         "8aa8b10b": ("6.9e-4", "16", "last", "related", "false"),
         "189f403f": ("4.4e-4", "8", "middle", "en", "false")}


def new_search_store(directory: Path, name: str, searched) -> tuple[str, MlflowClient, str, str]:
    """A new sqlite store under ``directory`` with the metaxl-tune experiment and the parent run of
    search ``name`` over ``searched``: (uri, client, experiment id, parent run id)."""
    uri = f"sqlite:///{directory / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("metaxl-tune", artifact_location=(directory / "mlartifacts").as_uri())
    parent = client.create_run(experiment, tags={
        "metaxl.search": name, "metaxl.role": "search", "metaxl.kind": "search",
        "metaxl.searched": ",".join(searched)}).info.run_id
    return uri, client, experiment, parent


def build_search_store(directory: Path) -> str:
    """A finished search with five searched parameters, written the way the search runner writes it."""
    uri, client, experiment, parent = new_search_store(directory, NAME, SEARCHED)
    for trial_id, params, dev in TRIALS:
        run = client.create_run(experiment, tags={
            "metaxl.search": NAME, "metaxl.role": "trial", "mlflow.parentRunId": parent,
            "metaxl.trial_id": trial_id, "metaxl.outcome": "completed", "metaxl.device_type": "cpu"}).info.run_id
        client.log_batch(run, params=[Param(key, value) for key, value in {**params, "target": "tk"}.items()],
                         metrics=[Metric("best_dev_f1", dev, 0, 3), Metric("best_test_f1", dev + 1.25, 0, 3),
                                  Metric("device_seconds", 30.0, 0, 3)])
        config = RunConfig(model="tiny", data="synthetic", target="tk", meta_lr=float(params["meta_lr"]))
        client.log_text(run, config.to_yaml(), "config.yaml")
        client.set_terminated(run, "FINISHED")
    client.set_terminated(parent, "FINISHED")
    return uri
