"""Reading finished searches back from MLflow: what ranking and exporting share.

Works from the tracking store alone (no Ray experiment folder needed): every trial's resolved
config is an artifact of its run, so the export is the exact config the trial trained with.
Configs are ranked in config_ranking.py and shown by config_view.py.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from metaxl_tune.config import RunConfig, load_config
from metaxl_tune.common.terminal import display_value
from metaxl_tune.results.mlflow_filters import tags_equal
from metaxl_tune.results.tracking import OUTCOME_TAG, SEARCH_TAG, Tracker

SEARCHED_TAG = "metaxl.searched"


class ResultsError(ValueError):
    """The requested search or metric is not in the tracking store."""


def search_trial_runs(tracker: Tracker) -> list:
    """The trial runs of ``tracker.search_name``, whatever their outcome. Raises ResultsError (one
    line) when the store has no searches or none of that name: what `best` and `report` read first."""
    if tracker.client.get_experiment_by_name(tracker.experiment) is None:
        raise ResultsError(f"no searches in {tracker.shown_uri}; check --tracking-uri (or MLFLOW_TRACKING_URI)")
    runs = tracker.trial_runs()
    if not runs:
        raise ResultsError(f"no search named {tracker.search_name} in {tracker.shown_uri}; "
                           "check --name and --tracking-uri")
    return runs


def measured_runs(runs: list, metric: str, name: str, *, none_completed: str) -> list:
    """The completed ones of ``runs`` that logged ``metric``. Raises ResultsError (one line) when no
    run completed (``none_completed`` says what that means for the caller) or none logged it."""
    completed = [run for run in runs if run.data.tags.get(OUTCOME_TAG) == "completed"]
    if not completed:
        outcomes: dict[str, int] = {}
        for run in runs:
            outcome = run.data.tags.get(OUTCOME_TAG, run.info.status.lower())
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
        counts = ", ".join(f"{count} {outcome}" for outcome, count in sorted(outcomes.items()))
        raise ResultsError(f"search {name} has no completed trial ({counts}); {none_completed}")
    measured = [run for run in completed if metric in run.data.metrics]
    if not measured:
        known = sorted({key for run in completed for key in run.data.metrics})
        raise ResultsError(f"--metric {metric}: no completed trial of {name} logged it; logged: {', '.join(known)}")
    return measured


def metric_mode(metric: str) -> str:
    return "min" if "loss" in metric or metric.endswith("seconds") else "max"


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
    """The config as YAML or JSON text (written to ``path`` when given); `train --config` reads both.
    YAML starts with ``origin``'s lines as comments (JSON has none: the record stays out of it)."""
    if fmt not in ("yaml", "json"):
        raise ResultsError(f"--format {fmt}: use yaml or json")
    if fmt == "json":
        text = json.dumps(config.to_dict(), indent=2) + "\n"
    else:
        where = path or "FILE"
        header = "".join(f"# {line}\n" for line in origin.splitlines())
        text = f"{header}# reproduce with: metaxl-tune train --config {where}\n" + config.to_yaml()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return text


def format_value(value: Any) -> str:
    """A param or metric as a short cell: ``1.2e-4``, ``emb+last``, ``true``."""
    return display_value(value)


def mixture_weights(metrics: dict[str, float]) -> str:
    """A trial's learned RTN mixture weights (its last logged ``rtn_mix_*`` metrics), e.g.
    ``0:0.41 12:0.59``; empty for trials without a mixture."""
    return " ".join(
        f"{key.removeprefix('rtn_mix_')}:{value:.2f}" for key, value in sorted(metrics.items(), key=_placement_order) if key.startswith("rtn_mix_")
    )


def _placement_order(item: tuple[str, float]) -> list[tuple[int, int | str]]:
    # rtn_mix_2 before rtn_mix_12
    return [(0, int(part)) if part.isdigit() else (1, part) for part in item[0].split("_")]
