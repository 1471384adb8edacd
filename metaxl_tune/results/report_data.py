"""A finished ablation's (or search's) results read back from the tracking store, grouped into
the cells of a paper-style table (report.py draws it).

Each completed trial run contributes one value of ``metric`` (default ``best_test_f1``: test F1
at the best-dev epoch, the number the paper reports) to the cell (row = its ``metaxl.setting``
tag, or for a plain search the searched point; column = its ``target`` param), in seed order.

Order: rows follow the parent run's ``metaxl.settings_order`` tag (comma-separated) when set,
else sorted; columns follow ``metaxl.targets_order`` (or ``metaxl.targets``) likewise. Pruned and
failed trials are left out of the cells but counted in the cost, which they also spent.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Iterable, Sequence

from metaxl_tune.results.ranking import SEARCHED_TAG, format_value, measured_runs, search_trial_runs
from metaxl_tune.results.mlflow_filters import tags_equal
from metaxl_tune.results.tracking import OUTCOME_TAG, PARENT_TAG, SEARCH_TAG, TRIAL_TAG, Tracker

SETTING_TAG = "metaxl.setting"
SETTINGS_ORDER_TAG = "metaxl.settings_order"
TARGETS_ORDER_TAG = "metaxl.targets_order"
TARGETS_TAG = "metaxl.targets"
STUDY_TAG = "metaxl.study"
KIND_TAG = "metaxl.kind"
DEVICE_TAG = "metaxl.device_type"
# Params that are columns or replicates, never part of a fallback row label.
_NOT_A_SETTING = ("target", "seed")
_HOURS = {"cuda": "GPU-hours", "cpu": "CPU-hours"}
# Short names in a plain search's row labels, so a row with every searched parameter fits an
# 80-column terminal; the legend spells out the ones a table uses.
SHORT_NAMES = {"meta_lr": "β", "rtn_bottleneck": "r", "rtn_layers": "at", "rtn_detach_input": "detach",
               "source": "src", "rtn_gate": "gate", "source_size": "n_src"}


@dataclass(frozen=True)
class Cell:
    """The per-seed values of one (setting, target), in seed order."""

    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float | None:
        """Sample standard deviation (ddof = 1); None for a single seed."""
        return statistics.stdev(self.values) if len(self.values) > 1 else None


@dataclass(frozen=True)
class Cost:
    """Device time spent by every trial of the search (pruned and failed included)."""

    seconds: dict[str, float]  # device type ('cuda', 'cpu', '?') -> device-seconds
    outcomes: dict[str, int]  # outcome -> trials

    @property
    def trials(self) -> int:
        return sum(self.outcomes.values())

    @property
    def gpu_hours(self) -> float:
        return self.seconds.get("cuda", 0.0) / 3600

    @property
    def cpu_hours(self) -> float:
        return self.seconds.get("cpu", 0.0) / 3600

    def line(self) -> str:
        if not self.seconds:
            spent = "unknown (no trial logged device_seconds)"
        else:
            spent = " + ".join(
                f"{seconds / 3600:.2f} {_HOURS.get(device, 'device-hours')}"
                for device, seconds in sorted(self.seconds.items(), key=lambda item: _device_rank(item[0]))
            )
        counts = ", ".join(f"{count} {outcome}" for outcome, count in sorted(self.outcomes.items()))
        return f"Cost: {spent} over {self.trials} trials ({counts})"


def _device_rank(device: str) -> tuple[int, str]:
    return (list(_HOURS).index(device) if device in _HOURS else len(_HOURS), device)


@dataclass
class ReportData:
    """Completed trials of one search, grouped into cells."""

    name: str
    metric: str
    settings: list[str]
    targets: list[str]
    cells: dict[tuple[str, str], Cell]
    cost: Cost
    parent_run_id: str | None = None
    study: str | None = None
    kind: str | None = None
    short_names: tuple[str, ...] = ()
    """Searched parameters shown under a SHORT_NAMES alias in the row labels."""

    def values(self, setting: str, target: str) -> list[float]:
        cell = self.cells.get((setting, target))
        return list(cell.values) if cell else []


def _ordered(names: Iterable[str], preferred: str) -> list[str]:
    """Names in the order of the comma-separated ``preferred`` list, the others sorted after."""
    names = set(names)
    listed = [name for name in dict.fromkeys(part.strip() for part in preferred.split(",")) if name in names]
    return listed + sorted(names - set(listed))


def _parent(tracker: Tracker):
    query = tags_equal({SEARCH_TAG: tracker.search_name, "metaxl.role": "search"})
    parents = tracker.client.search_runs([tracker.experiment_id], filter_string=query, max_results=1)
    return parents[0] if parents else None


def _seed_key(seed: str) -> tuple[int, float, str]:
    try:
        return (0, float(seed), "")
    except ValueError:
        return (1, 0.0, seed)


def _setting_of(run, searched: Sequence[str]) -> str:
    tags, params = run.data.tags, run.data.params
    if tags.get(SETTING_TAG):
        return tags[SETTING_TAG]
    # A plain search: the row is the searched point, or the trial when nothing was searched.
    label = " ".join(
        f"{SHORT_NAMES.get(key, key)}={format_value(params[key])}"
        for key in searched if key in params and key not in _NOT_A_SETTING
    )
    return label or tags.get(TRIAL_TAG, run.info.run_id[:8])


def collect(tracker: Tracker, *, metric: str = "best_test_f1") -> ReportData:
    """The completed trials of ``tracker.search_name`` grouped by (setting, target).

    Raises ResultsError (one line) when the store, the search, a completed trial or the metric is missing.
    """
    name = tracker.search_name
    runs = search_trial_runs(tracker)

    outcomes: dict[str, int] = {}
    seconds: dict[str, float] = {}
    for run in runs:
        outcome = run.data.tags.get(OUTCOME_TAG, run.info.status.lower())
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        if "device_seconds" in run.data.metrics:
            device = run.data.tags.get(DEVICE_TAG, "?")
            seconds[device] = seconds.get(device, 0.0) + run.data.metrics["device_seconds"]
    cost = Cost(seconds=seconds, outcomes=outcomes)

    measured = measured_runs(runs, metric, name, none_completed="nothing to report yet")

    parent = _parent(tracker)
    parent_tags = dict(parent.data.tags) if parent is not None else {}
    searched = [key for key in parent_tags.get(SEARCHED_TAG, "").split(",") if key]
    grouped: dict[tuple[str, str], list[tuple[str, float]]] = {}
    for run in measured:
        key = (_setting_of(run, searched), run.data.params.get("target", "-"))
        grouped.setdefault(key, []).append((run.data.params.get("seed", ""), run.data.metrics[metric]))
    cells = {
        key: Cell(tuple(value for _, value in sorted(pairs, key=lambda pair: (_seed_key(pair[0]), pair[1]))))
        for key, pairs in grouped.items()
    }
    parent_id = parent.info.run_id if parent is not None else measured[0].data.tags.get(PARENT_TAG)
    return ReportData(
        name=name,
        metric=metric,
        settings=_ordered((setting for setting, _ in cells), parent_tags.get(SETTINGS_ORDER_TAG, "")),
        targets=_ordered(
            (target for _, target in cells),
            parent_tags.get(TARGETS_ORDER_TAG) or parent_tags.get(TARGETS_TAG, ""),  # ablate's --targets order
        ),
        cells=cells,
        cost=cost,
        parent_run_id=parent_id,
        study=parent_tags.get(STUDY_TAG),
        kind=parent_tags.get(KIND_TAG),
        short_names=tuple(key for key in searched if key in SHORT_NAMES and key not in _NOT_A_SETTING
                          and not any(run.data.tags.get(SETTING_TAG) for run in measured)),
    )
