"""The optimism gap: how far new seeds put a config from the mean the search reported for it.

A search reports the config whose mean was best, and a best mean is partly luck: among many
configs, the one on top is likely one whose seeds happened to score high. Training it again on
seeds the search never ran for it (`best --rerun`, `best --compare`) measures that luck:

    gap = mean over fresh seeds - the mean the search reported

A negative gap is what the search's figure overstated the config by. A re-run seed that the
search already trained the config with would give the same score again (training is
deterministic per seed), so it is left out of the fresh mean and named.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Mapping, Sequence

from metaxl_tune.common.terminal import Column, render_table
from metaxl_tune.results.config_ranking import COMPLETED, ConfigRow
from metaxl_tune.results.report_data import SETTING_TAG
from metaxl_tune.results.tracking import OUTCOME_TAG, Tracker

MEANING = "optimism gap = fresh-seed mean minus the search's mean for the config; negative: the search overstated it"


@dataclass(frozen=True)
class OptimismGap:
    config_id: str
    metric: str
    reported: float
    """The search's mean of ``metric`` over the config's seeds."""
    reported_seeds: int
    fresh: tuple[float, ...]
    """The re-run's scores on seeds the search did not train this config with."""
    reused: tuple[str, ...]
    """Re-run seeds the search had trained this config with (left out of ``fresh``)."""

    @property
    def fresh_mean(self) -> float | None:
        return statistics.fmean(self.fresh) if self.fresh else None

    @property
    def gap(self) -> float | None:
        return None if self.fresh_mean is None else self.fresh_mean - self.reported

    def line(self) -> str:
        """One line: the two means, their seed counts and the gap (or why there is none)."""
        left_out = f"; seed {', '.join(self.reused)} left out: the search trained it already" if self.reused else ""
        reported = f"the search's mean {self.reported:.2f} ({self.reported_seeds} seed{'s' * (self.reported_seeds > 1)})"
        if self.gap is None:
            return (f"optimism gap of {self.metric}: no fresh seed to measure it ({reported}{left_out}); "
                    "re-run with a larger --seeds")
        return (f"optimism gap of {self.metric}: {self.gap:+.2f} = fresh-seed mean {self.fresh_mean:.2f} "
                f"({len(self.fresh)} seed{'s' * (len(self.fresh) > 1)}) - {reported}{left_out}")


def optimism_gap(row: ConfigRow, metric: str, rerun: Mapping[str, float]) -> OptimismGap | None:
    """The gap of ``metric`` for ``row``, from the re-run's scores by seed; None when the search
    has no score of ``metric`` for the config."""
    reported = row.mean_of(metric)
    if reported is None:
        return None
    searched_seeds = set(row.seed_values)
    fresh = tuple(value for seed, value in _in_seed_order(rerun) if seed not in searched_seeds)
    reused = tuple(seed for seed, _ in _in_seed_order(rerun) if seed in searched_seeds)
    return OptimismGap(row.config_id, metric, reported, len(row.scores(metric)), fresh, reused)


def _in_seed_order(values: Mapping[str, float]) -> list[tuple[str, float]]:
    return sorted(values.items(), key=lambda item: (0, int(item[0])) if item[0].isdigit() else (1, item[0]))


def rerun_scores(tracker: Tracker, metric: str) -> dict[str, dict[str, float]]:
    """A re-run's (or comparison's) completed runs: setting (a re-run's are config ids) -> seed -> ``metric``."""
    scores: dict[str, dict[str, float]] = {}
    for run in tracker.trial_runs():
        if run.data.tags.get(OUTCOME_TAG) != COMPLETED or metric not in run.data.metrics:
            continue
        setting = run.data.tags.get(SETTING_TAG, "")
        scores.setdefault(setting, {})[run.data.params.get("seed", "?")] = run.data.metrics[metric]
    return scores


def gap_table(gaps: Sequence[OptimismGap], *, width: int | None = None) -> str:
    """One row per re-run config: the search's mean, the fresh-seed mean, the gap."""
    columns = [
        Column("config", [gap.config_id for gap in gaps], align="left"),
        Column("search mean", [f"{gap.reported:.2f}" for gap in gaps]),
        Column("seeds", [str(gap.reported_seeds) for gap in gaps]),
        Column("fresh mean", ["-" if gap.fresh_mean is None else f"{gap.fresh_mean:.2f}" for gap in gaps]),
        Column("fresh seeds", [str(len(gap.fresh)) for gap in gaps]),
        Column("gap", ["-" if gap.gap is None else f"{gap.gap:+.2f}" for gap in gaps]),
    ]
    return render_table(columns, width=width)
