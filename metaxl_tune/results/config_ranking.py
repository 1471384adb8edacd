"""Ranking a finished search's configs, not its trials (issue #25).

One trial is one training with one seed, and seeds are noisy: two seeds of one config differ by
about as much as good configs do from the median one (bench/search_quality.py), so the best
single trial is often a lucky seed.
``best`` therefore ranks configs: a config's score is the mean of the ranking metric over its
completed trials (its seeds), with the standard error of that mean. Configs are ranked by mean
among those with the most seeds, then the configs with fewer seeds below them, each seed count
ranked among itself: a config measured on more seeds is a surer thing than a higher mean on
fewer, and a one-seed config's "mean" is a single training.

Only completed trials count as seeds (outcome tag ``completed``): a pruned trial stopped before
its last epoch, and a failed or interrupted one never finished; their scores are not the
config's. A seed-aware search tags every trial with its config id, seed and repeat
(results/tracking.py); a search from before those tags gets them derived from its records: the
config id from the trial's searched params (config/identity.config_id), the seed from its
``seed`` param. Each such trial is then a one-seed config, unless two trials share values.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from typing import Any, Mapping

from metaxl_tune.config.identity import config_id
from metaxl_tune.results.ranking import metric_mode, measured_runs, search_trial_runs, searched_parameters
from metaxl_tune.results.tracking import CONFIG_ID_TAG, OUTCOME_TAG, REPEAT_TAG, SEED_TAG, TRIAL_TAG, Tracker

COMPLETED = "completed"
"""The outcome of a trial that ran its last epoch: the only kind that counts as a seed."""
NOT_A_CONFIG_VALUE = ("seed",)
"""Searched names that are no part of a config's identity: a space that searches ``seed``
(some tests' spaces do) runs one config over seeds."""


@dataclass(frozen=True)
class SeedRun:
    """One completed trial of a config: one training with one seed."""

    run_id: str
    trial_id: str
    seed: str
    """Empty where the trial recorded none."""
    repeat: int | None
    metrics: Mapping[str, float]


@dataclass(frozen=True)
class ConfigRow:
    """A config and its completed trials, in repeat (else seed) order."""

    config_id: str
    metric: str
    values: Mapping[str, str]
    """Searched parameter -> the value its trials recorded (an MLflow param)."""
    runs: tuple[SeedRun, ...]

    @property
    def seeds(self) -> int:
        return len(self.runs)

    def scores(self, metric: str | None = None) -> tuple[float, ...]:
        metric = metric or self.metric
        return tuple(run.metrics[metric] for run in self.runs if metric in run.metrics)

    def mean_of(self, metric: str) -> float | None:
        scores = self.scores(metric)
        return statistics.fmean(scores) if scores else None

    @property
    def mean(self) -> float:
        return statistics.fmean(self.scores())

    @property
    def stderr(self) -> float | None:
        """Standard error of the mean over seeds; None for one seed (no spread to measure)."""
        scores = self.scores()
        return statistics.stdev(scores) / math.sqrt(len(scores)) if len(scores) > 1 else None

    @property
    def seed_values(self) -> tuple[str, ...]:
        return tuple(run.seed for run in self.runs)

    @property
    def trial_ids(self) -> tuple[str, ...]:
        return tuple(run.trial_id for run in self.runs)

    def score_text(self) -> str:
        """``28.43 ± 0.41`` (mean ± standard error), or the one seed's score alone."""
        return f"{self.mean:.2f}" if self.stderr is None else f"{self.mean:.2f} ± {self.stderr:.2f}"


@dataclass(frozen=True)
class RankedConfigs:
    name: str
    metric: str
    rows: tuple[ConfigRow, ...]
    """Best first (see the module docstring)."""
    searched: tuple[str, ...]
    """The searched parameters shown for each config (``seed`` left out)."""
    outcomes: Mapping[str, int]
    """Trials per outcome, all of them (also those that are no config's seed)."""

    @property
    def most_seeds(self) -> int:
        return self.rows[0].seeds

    @property
    def incumbent(self) -> ConfigRow:
        return self.rows[0]

    def by_id(self, identifier: str) -> ConfigRow:
        return next(row for row in self.rows if row.config_id == identifier)

    def rule(self) -> str:
        """The ranking rule, said under the table."""
        direction = "highest" if metric_mode(self.metric) == "max" else "lowest"
        if self.most_seeds == 1:
            return (f"Every config has 1 seed (completed trial): ranked by its one {self.metric} ({direction} "
                    "first), a single training, not a mean; `best --rerun --seeds N` trains the top configs on N seeds.")
        fewer = (", then those with fewer, each seed count ranked among itself"
                 if any(row.seeds < self.most_seeds for row in self.rows) else "")
        return (f"Ranked by mean {self.metric} ({direction} first) among the configs with the most seeds "
                f"({self.most_seeds}){fewer}. ± is the standard error of the mean over seeds (completed trials "
                "only); a 1-seed score is one training, not a mean.")


def ranked_configs(tracker: Tracker, metric: str) -> RankedConfigs:
    """The search's configs, best first. Raises ResultsError (one line) when the store, the
    search, a completed trial or the metric is missing."""
    name = tracker.search_name
    runs = search_trial_runs(tracker)
    outcomes: dict[str, int] = {}
    for run in runs:
        outcome = run.data.tags.get(OUTCOME_TAG, run.info.status.lower())
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    measured = measured_runs(runs, metric, name, none_completed="no config has a seed to rank it on yet")

    searched = tuple(key for key in searched_parameters(tracker) if key not in NOT_A_CONFIG_VALUE)
    grouped: dict[str, list[Any]] = {}
    for run in measured:
        grouped.setdefault(run_config_id(run, searched), []).append(run)
    rows = [_row(identifier, metric, searched, members) for identifier, members in grouped.items()]
    sign = -1.0 if metric_mode(metric) == "max" else 1.0
    rows.sort(key=lambda row: (-row.seeds, sign * row.mean, row.config_id))
    return RankedConfigs(name, metric, tuple(rows), searched, outcomes)


def run_config_id(run: Any, searched: tuple[str, ...]) -> str:
    """The trial's config id: its tag, else (a search from before the tag) the id of its
    recorded searched values; a trial of a search whose searched names are unknown is its own config."""
    tagged = run.data.tags.get(CONFIG_ID_TAG)
    if tagged:
        return tagged
    if not searched:
        return config_id({TRIAL_TAG: run.data.tags.get(TRIAL_TAG, run.info.run_id)})
    return config_id({key: run.data.params.get(key) for key in searched})


def _row(identifier: str, metric: str, searched: tuple[str, ...], members: list[Any]) -> ConfigRow:
    seed_runs = [
        SeedRun(run_id=run.info.run_id, trial_id=run.data.tags.get(TRIAL_TAG, run.info.run_id[:8]),
                seed=run.data.tags.get(SEED_TAG) or run.data.params.get("seed", ""),
                repeat=_int_or_none(run.data.tags.get(REPEAT_TAG)), metrics=dict(run.data.metrics))
        for run in members
    ]
    # Paired seeds: repeat 0 first; a search without repeats in seed order (numbers as numbers).
    seed_runs.sort(key=lambda run: (run.repeat is None, run.repeat or 0, _seed_key(run.seed), run.trial_id))
    first = members[0].data.params
    return ConfigRow(identifier, metric, {key: first.get(key, "") for key in searched}, tuple(seed_runs))


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _seed_key(seed: str) -> tuple[int, int | str]:
    return (0, int(seed)) if seed.isdigit() else (1, seed)


def seed_number(seed: str) -> int | str:
    """A seed as the YAML record holds it: a number where it is one."""
    return int(seed) if seed.isdigit() else seed


def chosen_record(ranked: RankedConfigs, row: ConfigRow) -> dict[str, Any]:
    """What an exported config was chosen on: its search, id, the metric's mean and standard
    error over its seeds, the seeds and the trials (one JSON line in the file's header)."""
    return {
        "search": ranked.name,
        "config_id": row.config_id,
        "metric": ranked.metric,
        "mean": round(row.mean, 4),
        "stderr": None if row.stderr is None else round(row.stderr, 4),
        "seeds": [seed_number(seed) for seed in row.seed_values],
        "trials": list(row.trial_ids),
        "rank": f"1 of {len(ranked.rows)} configs, among those with {ranked.most_seeds} seeds",
    }


CHOSEN_PREFIX = "chosen on: "
"""The header line of an exported config that holds ``chosen_record`` as JSON, after ``# ``."""


def export_origin(ranked: RankedConfigs, row: ConfigRow, exported: SeedRun) -> str:
    """The comment lines above an exported config (the config loader forbids unknown fields, so
    the record of how it was chosen is a comment): what it is, the record, which seed the file trains."""
    seeds = ", ".join(seed or "?" for seed in row.seed_values)
    plural = "s" if row.seeds > 1 else ""
    return "\n".join([
        f"config {row.config_id} of search {ranked.name}: the incumbent, {ranked.metric} {row.score_text()} "
        f"({'mean ± standard error over ' if row.stderr is not None else 'one training, '}{row.seeds} seed{plural}: {seeds})",
        CHOSEN_PREFIX + json.dumps(chosen_record(ranked, row)),
        f"this file trains seed {exported.seed or '?'} (trial {exported.trial_id}, MLflow run {exported.run_id}); "
        "add --seed N to train another",
    ])
