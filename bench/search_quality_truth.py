"""What the tabular benchmark's replays are scored against: per target, each config's seeds and
its true mean test F1, read two ways.

- ``all``: a replay draws from every seed of a config, and the truth is the mean test F1 over all
  of them (the paper's number: test F1 at the best dev epoch, averaged over seeds).
- ``held_out``: a replay draws only from the first half of a config's seeds (by seed number) and
  the truth is the mean of the other half, which no replay ever sees. A search that draws many
  seeds comes to know the ``all`` truth's own seeds, so its optimism and regret read low there;
  the held-out reading has no such leak. It needs >= 4 seeds per config (2 to draw, 2 to judge).

Also the table's signal: best - median config, the seed noise and whether the best config can be
told from the second within the standard error.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from search_quality_table import config_key

READINGS = ("all", "held_out")
HELD_OUT_MIN_SEEDS = 4


def test_at_best_dev(epochs: list[dict]) -> float:
    best = max(epochs, key=lambda e: e["dev_f1"])  # the first epoch of the best dev F1, as the trainer keeps
    return best["test_f1"]


@dataclass(frozen=True)
class Reading:
    """Which seeds a replay may draw, per config (ascending), and the truth it is scored against."""

    name: str
    pool: dict[str, tuple[int, ...]]
    truth: dict[str, float]

    @property
    def best(self) -> float:
        return max(self.truth.values())

    @property
    def worst(self) -> float:
        return min(self.truth.values())

    def top(self, count: int) -> set[str]:
        return set(sorted(self.truth, key=self.truth.get, reverse=True)[:count])


class Table:
    """The built table of one target: per config, its seeds' per-epoch rows."""

    def __init__(self, rows: list[dict[str, Any]], target: str):
        self.target = target
        self.seeds: dict[str, dict[int, list[dict]]] = defaultdict(dict)
        for row in rows:
            if row["target"] == target:
                self.seeds[config_key(row["params"])][row["seed"]] = row["epochs"]
        if not self.seeds:
            raise SystemExit(f"the table has no lines for target {target}; build it first "
                             "(bench/search_quality_table.py --targets ... --seeds 1-2)")
        # Seeds in ascending order, so that "the first half" is the same for every config.
        self.runs: dict[str, list[list[dict]]] = {key: [by_seed[seed] for seed in sorted(by_seed)]
                                                  for key, by_seed in self.seeds.items()}
        self.test = {key: {seed: test_at_best_dev(epochs) for seed, epochs in by_seed.items()}
                     for key, by_seed in self.seeds.items()}
        self.mean_test = {key: statistics.fmean(values.values()) for key, values in self.test.items()}
        self.best_test = max(self.mean_test.values())
        # What training the whole grid picks (best mean dev F1), and how far below the best it is:
        # no search that selects by dev F1 ends below this regret, whatever it spends.
        mean_dev = {key: statistics.fmean(max(e["dev_f1"] for e in epochs) for epochs in seeds)
                    for key, seeds in self.runs.items()}
        self.grid_pick_regret = self.best_test - self.mean_test[max(mean_dev, key=mean_dev.get)]
        self.worst_test = min(self.mean_test.values())
        self.grid_cost = sum(statistics.fmean(sum(e["steps"] for e in epochs) for epochs in seeds)
                             for seeds in self.runs.values())

    @property
    def seed_counts(self) -> dict[int, int]:
        """How many configs have how many seeds ({8: 48}: all 48 have 8)."""
        counts: dict[int, int] = defaultdict(int)
        for by_seed in self.seeds.values():
            counts[len(by_seed)] += 1
        return dict(sorted(counts.items()))

    @property
    def min_seeds(self) -> int:
        return min(len(by_seed) for by_seed in self.seeds.values())

    def reading(self, name: str) -> Reading | None:
        """The ``name`` reading; None for ``held_out`` while a config has fewer than 4 seeds."""
        if name == "all":
            return Reading(name, {key: tuple(sorted(s)) for key, s in self.seeds.items()}, dict(self.mean_test))
        if name != "held_out":
            raise ValueError(f"unknown reading {name}; use one of {', '.join(READINGS)}")
        if self.min_seeds < HELD_OUT_MIN_SEEDS:
            return None
        pool, truth = {}, {}
        for key, by_seed in self.seeds.items():
            ordered = sorted(by_seed)
            drawn, judged = ordered[: len(ordered) // 2], ordered[len(ordered) // 2:]
            pool[key] = tuple(drawn)
            truth[key] = statistics.fmean(self.test[key][seed] for seed in judged)
        return Reading(name, pool, truth)

    def signal(self) -> dict[str, Any]:
        """Best vs median config, the seed noise, and whether the best config stands out from the second."""
        values = sorted(self.mean_test.values())
        ranked = sorted(self.mean_test, key=self.mean_test.get, reverse=True)
        paired = [(values_by_seed[min(values_by_seed)], values_by_seed[sorted(values_by_seed)[1]])
                  for values_by_seed in self.test.values() if len(values_by_seed) > 1]
        several = [list(v.values()) for v in self.test.values() if len(v) > 1]
        spreads = [statistics.stdev(seeds) for seeds in several]

        def standard_error(key: str) -> float:
            seeds = list(self.test[key].values())
            return statistics.stdev(seeds) / math.sqrt(len(seeds)) if len(seeds) > 1 else math.inf

        gap = self.mean_test[ranked[0]] - self.mean_test[ranked[1]]
        gap_error = math.hypot(standard_error(ranked[0]), standard_error(ranked[1]))
        return {
            "configs": len(values), "seeds": self.min_seeds, "configs_by_seed_count": self.seed_counts,
            "best_test_f1": round(values[-1], 2), "median_test_f1": round(statistics.median(values), 2),
            "worst_test_f1": round(values[0], 2),
            "best_minus_median": round(values[-1] - statistics.median(values), 2),
            "grid_pick_regret": round(self.grid_pick_regret, 2),
            # Mean |first seed - second seed| of a config: the figure the table had with 2 seeds.
            "seed_noise": round(statistics.fmean(abs(a - b) for a, b in paired), 2) if paired else None,
            # Mean per-config standard deviation over all its seeds, and the standard error of a mean.
            "seed_sd": round(statistics.fmean(spreads), 2) if spreads else None,
            "mean_standard_error": round(statistics.fmean(spread / math.sqrt(len(seeds))
                                                          for spread, seeds in zip(spreads, several)), 2)
            if spreads else None,
            # Does the second seed rank the configs as the first does? Near 0: one trial says little.
            "seed_rank_correlation": round(rank_correlation(*zip(*paired)), 2) if len(paired) > 2 else None,
            "best_minus_second": round(gap, 2),
            "best_minus_second_standard_error": round(gap_error, 2) if math.isfinite(gap_error) else None,
            # Told apart when the gap exceeds the standard error of the difference of the two means.
            "best_told_from_second": bool(gap > gap_error),
        }


def _ranks(values: tuple[float, ...]) -> list[float]:
    """1-based ranks, ties given their mean rank."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for position in range(start, end + 1):
            ranks[order[position]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def rank_correlation(first: tuple[float, ...], second: tuple[float, ...]) -> float:
    """Spearman's rho: Pearson's correlation of the ranks."""
    return statistics.correlation(_ranks(first), _ranks(second))


def quartiles(values: list[float]) -> tuple[float, float, float]:
    q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else (values[0],) * 3
    return q1, median, q3


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile, linear between the ordered values (as quartiles' inclusive method)."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
