"""A finished seed-aware search in a real sqlite MLflow store, written as the search runner
writes it: each trial a nested run with its searched values as params, its seed (param and tag),
its config id and repeat (tags), its outcome and a config.yaml; some configs run over several
seeds. ``tagged=False`` writes the same search as a search from before the seed tags did.

The configs, their trials' best_dev_f1 (test F1 = dev + 1) and what `best` makes of them:

- A (meta_lr 1e-4, r 8):  seeds 11, 12, 13 -> 30, 32, 34: mean 32.00 ± 1.15, the incumbent;
- B (meta_lr 3e-4, r 16): seeds 11, 12, 13 -> 35, 29, 29: mean 31.00 ± 2.00; its seed 11 is the
  best completed trial of the search;
- C (meta_lr 1e-3, r 8):  seeds 11, 12 -> 33, 33.5 (mean 33.25 ± 0.25), seed 13 pruned at 40:
  two seeds, below A and B;
- D (meta_lr 2e-3, r 32): seed 11 -> 36; seed 12 failed: one seed, last;
- E (meta_lr 5e-3, r 8):  seed 11 interrupted at 38: no seed, no row.
"""

from __future__ import annotations

from pathlib import Path

from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from metaxl_tune.config import RunConfig
from metaxl_tune.config.identity import config_id
from search_store import new_search_store

NAME = "seeded-search"
SEARCHED = ("meta_lr", "rtn_bottleneck")
CONFIGS = {"A": (1e-4, 8), "B": (3e-4, 16), "C": (1e-3, 8), "D": (2e-3, 32), "E": (5e-3, 8)}
# (config, seed, outcome, best_dev_f1), in the order the search ran them.
TRIALS = [
    ("A", 11, "completed", 30.0), ("B", 11, "completed", 35.0), ("C", 11, "completed", 33.0),
    ("D", 11, "completed", 36.0), ("E", 11, "interrupted", 38.0), ("A", 12, "completed", 32.0),
    ("B", 12, "completed", 29.0), ("C", 12, "completed", 33.5), ("D", 12, "failed", 3.0),
    ("A", 13, "completed", 34.0), ("B", 13, "completed", 29.0), ("C", 13, "pruned", 40.0),
]
STATUS = {"completed": "FINISHED", "pruned": "KILLED", "failed": "FAILED", "interrupted": "KILLED"}


def trial_id(index: int) -> str:
    return f"ab12c_{index:05d}"  # Tune's form: the search's prefix, then the trial's number


def searched_values(config: str) -> dict:
    meta_lr, bottleneck = CONFIGS[config]
    return {"meta_lr": meta_lr, "rtn_bottleneck": bottleneck}


def build_seeded_store(directory: Path, *, tagged: bool = True) -> str:
    uri, client, experiment, parent = new_search_store(directory, NAME, SEARCHED)
    repeats: dict[str, int] = {}
    for index, (config, seed, outcome, dev) in enumerate(TRIALS):
        values = searched_values(config)
        tags = {"metaxl.search": NAME, "metaxl.role": "trial", "mlflow.parentRunId": parent,
                "metaxl.trial_id": trial_id(index), "metaxl.outcome": outcome, "metaxl.device_type": "cpu"}
        if tagged:
            tags.update({"metaxl.config_id": config_id(values), "metaxl.seed": str(seed),
                         "metaxl.repeat": str(repeats.get(config, 0))})
        repeats[config] = repeats.get(config, 0) + 1
        run = client.create_run(experiment, tags=tags).info.run_id
        run_config = RunConfig(model="tiny", data="synthetic", target="tk", seed=seed, **values)
        # Params as the runner logs them: str of each RunConfig value.
        params = {key: str(value) for key, value in run_config.to_dict().items()}
        client.log_batch(run, params=[Param(key, value) for key, value in params.items()],
                         metrics=[Metric("best_dev_f1", dev, 0, 3), Metric("best_test_f1", dev + 1.0, 0, 3),
                                  Metric("device_seconds", 30.0, 0, 3)])
        client.log_text(run, run_config.to_yaml(), "config.yaml")
        client.set_terminated(run, STATUS[outcome])
    client.set_terminated(parent, "FINISHED")
    return uri


def parent_run_id(uri: str) -> str:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("metaxl-tune")
    (parent,) = client.search_runs([experiment.experiment_id],
                                   f"tags.`metaxl.search` = '{NAME}' and tags.`metaxl.role` = 'search'")
    return parent.info.run_id
