"""Reading finished searches back from MLflow: ranking trials and exporting the winner.

Works from the tracking store alone (no Ray experiment folder needed): every trial's resolved
config is an artifact of its run, so the export is the exact config the trial trained with.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metaxl_tune.config import RunConfig, load_config
from metaxl_tune.terminal import Column, display_value, render_table, short_ids
from metaxl_tune.mlflow_filters import tags_equal
from metaxl_tune.tracking import OUTCOME_TAG, SEARCH_TAG, TRIAL_TAG, Tracker

SEARCHED_TAG = "metaxl.searched"


class ResultsError(ValueError):
    """The requested search or metric is not in the tracking store."""


@dataclass
class TrialRow:
    run_id: str
    trial_id: str
    outcome: str
    value: float
    metrics: dict[str, float]
    params: dict[str, str]


def metric_mode(metric: str) -> str:
    return "min" if "loss" in metric or metric.endswith("seconds") else "max"


def ranked_trials(tracker: Tracker, metric: str) -> list[TrialRow]:
    """Trials of the search that logged ``metric``, best first."""
    if tracker.client.get_experiment_by_name(tracker.experiment) is None:
        raise ResultsError(f"no searches in {tracker.tracking_uri}; check --tracking-uri (or MLFLOW_TRACKING_URI)")
    runs = tracker.trial_runs()
    if not runs:
        raise ResultsError(
            f"no search named {tracker.search_name} in {tracker.tracking_uri}; check --name and --tracking-uri"
        )
    rows = [
        TrialRow(
            run_id=run.info.run_id,
            trial_id=run.data.tags.get(TRIAL_TAG, "?"),
            outcome=run.data.tags.get(OUTCOME_TAG, run.info.status.lower()),
            value=run.data.metrics[metric],
            metrics=dict(run.data.metrics),
            params=dict(run.data.params),
        )
        for run in runs
        if metric in run.data.metrics
    ]
    if not rows:
        known = sorted({key for run in runs for key in run.data.metrics})
        raise ResultsError(f"--metric {metric}: no trial of {tracker.search_name} logged it; logged: {', '.join(known)}")
    return sorted(rows, key=lambda row: row.value, reverse=metric_mode(metric) == "max")


def searched_parameters(tracker: Tracker) -> list[str]:
    query = tags_equal({SEARCH_TAG: tracker.search_name, "metaxl.role": "search"})
    parents = tracker.client.search_runs([tracker.experiment_id], filter_string=query, max_results=1)
    if not parents:
        return []
    return [name for name in parents[0].data.tags.get(SEARCHED_TAG, "").split(",") if name]


def trial_config(tracker: Tracker, run_id: str) -> RunConfig:
    with tempfile.TemporaryDirectory() as directory:
        path = tracker.client.download_artifacts(run_id, "config.yaml", directory)
        return load_config(path)


def export_config(config: RunConfig, path: Path | None, fmt: str, *, origin: str = "") -> str:
    """The config as YAML or JSON text (written to ``path`` when given); `train --config` reads both."""
    if fmt not in ("yaml", "json"):
        raise ResultsError(f"--format {fmt}: use yaml or json")
    if fmt == "json":
        text = json.dumps(config.to_dict(), indent=2) + "\n"
    else:
        where = path or "FILE"
        text = f"# {origin}\n# reproduce with: metaxl-tune train --config {where}\n" + config.to_yaml()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return text


def format_value(value: Any) -> str:
    """A param or metric as a short cell: ``1.2e-4``, ``emb+last``, ``true``."""
    return display_value(value)


def best_columns(rows: list[TrialRow], metric: str, searched: list[str]) -> list[Column]:
    """``best``'s columns: rank, the metric and every searched parameter are always shown; when
    the terminal is narrow the outcome goes first, then the trial id, then test F1. A column
    added later takes a ``keep`` between these (lower is dropped sooner)."""
    return [
        Column("#", [str(rank) for rank in range(1, len(rows) + 1)]),
        Column("trial", short_ids([row.trial_id for row in rows]), align="left", keep=20),
        Column("outcome", [row.outcome for row in rows], align="left", keep=10),
        Column(metric, [f"{row.value:.2f}" for row in rows]),
        Column("test F1", [_f1(row.metrics.get("best_test_f1")) for row in rows], keep=30),
        *(Column(key, [format_value(row.params.get(key, "")) for row in rows], align="left") for key in searched),
        # Peak device memory of the trial's last epoch (CUDA max allocated, peak RSS on CPU):
        # what --gpus-per-trial 0.5 has to fit.
        *([Column("peak MiB", [_mib(row.metrics.get("peak_memory_mib")) for row in rows], keep=15)]
          if any("peak_memory_mib" in row.metrics for row in rows) else []),
        *([Column("RTN mix", [mixture_weights(row.metrics) for row in rows], align="left", keep=25)]
          if any(mixture_weights(row.metrics) for row in rows) else []),
    ]


def _f1(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def _mib(value: float | None) -> str:
    return "" if value is None else str(round(value))


def best_table(rows: list[TrialRow], metric: str, searched: list[str], *, width: int | None = None,
               wide: bool = False) -> str:
    return render_table(best_columns(rows, metric, searched), width=width, wide=wide)


def mixture_weights(metrics: dict[str, float]) -> str:
    """A trial's learned RTN mixture weights (its last logged ``rtn_mix_*`` metrics), e.g.
    ``0:0.41 12:0.59``; empty for trials without a mixture."""
    return " ".join(
        f"{key.removeprefix('rtn_mix_')}:{value:.2f}" for key, value in sorted(metrics.items(), key=_placement_order) if key.startswith("rtn_mix_")
    )


def _placement_order(item: tuple[str, float]) -> list[tuple[int, int | str]]:
    # rtn_mix_2 before rtn_mix_12
    return [(0, int(part)) if part.isdigit() else (1, part) for part in item[0].split("_")]
