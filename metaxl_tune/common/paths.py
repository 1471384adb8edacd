"""Where a working directory's results go: one folder, ``./metaxl-runs/`` by default.

    metaxl-runs/mlflow.db          MLflow store (runs, params, metrics, tags)
    metaxl-runs/mlartifacts/       MLflow artifacts (configs, checkpoints, plots, reports)
    metaxl-runs/metaxl-searches/   Tune and Optuna state per search (--storage; resume, sync)
    metaxl-runs/configs/           configs exported by the demo (`best -o`)

``$METAXL_TUNE_RUNS`` moves the folder (``.`` gives the old layout: ``./mlflow.db``,
``./metaxl-searches``); ``--tracking-uri``/``MLFLOW_TRACKING_URI`` and ``--storage`` still
override each part.
"""

from __future__ import annotations

import os
from pathlib import Path

RUNS_ENV = "METAXL_TUNE_RUNS"
DEFAULT_RUNS = "metaxl-runs"
SEARCHES = "metaxl-searches"


def runs_dir() -> Path:
    return Path(os.environ.get(RUNS_ENV) or DEFAULT_RUNS)


def default_storage() -> str:
    """Tune storage for searches and ablations (relative: resolved when a search starts)."""
    return str(runs_dir() / SEARCHES)


def configs_dir() -> Path:
    return runs_dir() / "configs"


CACHE_ENV = "METAXL_TUNE_CACHE"


def default_cache_dir() -> Path:
    """Encoded data, trained tokenizers and tiny-pretrained: ``$METAXL_TUNE_CACHE``, else
    ``~/.cache/metaxl-tune``. Here, not beside the trainer, so that a search driver warming the
    data cache does not load the trainer's model code."""
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "metaxl-tune"))
