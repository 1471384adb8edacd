"""How fast does a search find the best config? A tabular benchmark (HPOBench/YAHPO style).

The table (bench/search_quality_table.py, committed as bench/data/search_quality_table.jsonl):
every point of bench/data/search_quality_space.yaml (3 meta lrs x 2 bottlenecks x 4 placements
x 2 sources = 48 configs) trained for real on tiny-pretrained synthetic NER, for targets tk and
qu, 2 seeds each, with per-epoch dev F1, test F1 and optimizer steps. Missing lines are trained
first (resumable: a killed build keeps what it wrote); an up-to-date table costs nothing.

The replays run searches on the table: the trial body looks the config up instead of training.
They are an in-process equivalent of ``search``, not Ray Tune runs: the same factories
(metaxl_tune/search/strategy.py: ``build_sampler``, ``build_searcher`` -> the space's
define-by-run ``sample`` inside PruningAwareOptunaSearch, ``build_scheduler`` -> Tune's own
ASHAScheduler or FIFOScheduler) and the same warm start (metaxl_tune/search/warm_start.py),
driven through their Tune interfaces (``suggest``, ``on_trial_result``, ``on_trial_complete``)
one trial at a time, with an in-memory Optuna study. Each trial draws one of the config's seeds
at random, so a replay sees the table's seed noise as a search would.

Per strategy (random+FIFO, TPE+FIFO, TPE+ASHA, GP+FIFO, and TPE+ASHA warm-started from a
TPE+ASHA search on the other target, its best config run first), ``--repetitions`` replays per
target, each with a budget of the full grid's cost (every config trained to its end once).
Regret: the best config's mean test F1 minus the mean test F1 of the config whose completed
trial has the best dev F1 so far; before any trial completes, the best minus the worst config.
``cost_to_within_1f1``: the fraction of the grid's cost spent when the regret first reaches
<= 1 F1 (1.0 if never), median over the repetitions of both targets. ``cost_to_grid_pick``: the same
for reaching the regret of the config that training the whole grid picks (best mean dev F1).

    .venv/bin/python bench/search_quality.py                  # build what is missing, then replay
    nice -n 15 .venv/bin/python bench/search_quality.py --build-only --jobs 2

Last line: one JSON object (keys in the issue: random_cost_to_within_1f1, tpe_asha_cost_to_within_1f1,
gp_cost_to_within_1f1, warm_tpe_asha_cost_to_within_1f1, tpe_asha_over_random). The curves go to
bench/data/search_quality_curves.png.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import optuna  # noqa: E402
from search_quality_table import BASE, build, config_key, read_table  # noqa: E402

from metaxl_tune.config import RunConfig  # noqa: E402
from metaxl_tune.search.space import SearchSpace, load_space  # noqa: E402
from metaxl_tune.search.strategy import build_sampler, build_scheduler, build_searcher  # noqa: E402
from metaxl_tune.search.warm_start import priors_from_study, seed_study  # noqa: E402

HERE = Path(__file__).resolve().parent
DEFAULT_SPACE = HERE / "data" / "search_quality_space.yaml"
DEFAULT_TABLE = HERE / "data" / "search_quality_table.jsonl"
DEFAULT_PLOT = HERE / "data" / "search_quality_curves.png"

STRATEGIES: dict[str, tuple[str, str, bool]] = {
    # name: (sampler, scheduler, warm-started from the other target)
    "random_fifo": ("random", "fifo", False),
    "tpe_fifo": ("tpe", "fifo", False),
    "tpe_asha": ("tpe", "asha", False),
    "gp_fifo": ("gp", "fifo", False),
    "warm_tpe_asha": ("tpe", "asha", True),
}
WARM_START_TOP = 1
CURVE_POINTS = [round(0.05 * i, 2) for i in range(1, 21)]


class Table:
    """The built table of one target: per config, its seeds' per-epoch rows."""

    def __init__(self, rows: list[dict[str, Any]], target: str):
        self.target = target
        self.runs: dict[str, list[list[dict]]] = defaultdict(list)
        for row in rows:
            if row["target"] == target:
                self.runs[config_key(row["params"])].append(row["epochs"])
        if not self.runs:
            raise SystemExit(f"the table has no lines for target {target}; build it first")
        # The paper's number: test F1 at the best dev epoch, averaged over seeds.
        self.mean_test = {key: statistics.fmean(_test_at_best_dev(epochs) for epochs in seeds)
                          for key, seeds in self.runs.items()}
        self.best_test = max(self.mean_test.values())
        # What training the whole grid picks (best mean dev F1), and how far below the best it is:
        # no search that selects by dev F1 ends below this regret, whatever it spends.
        mean_dev = {key: statistics.fmean(max(e["dev_f1"] for e in epochs) for epochs in seeds)
                    for key, seeds in self.runs.items()}
        self.grid_pick_regret = self.best_test - self.mean_test[max(mean_dev, key=mean_dev.get)]
        self.worst_test = min(self.mean_test.values())
        self.grid_cost = sum(statistics.fmean(sum(e["steps"] for e in epochs) for epochs in seeds)
                             for seeds in self.runs.values())

    def signal(self) -> dict[str, float]:
        """Best vs median config, and the seed noise (mean |seed 1 - seed 2| of a config)."""
        values = sorted(self.mean_test.values())
        paired = [(_test_at_best_dev(seeds[0]), _test_at_best_dev(seeds[1]))
                  for seeds in self.runs.values() if len(seeds) > 1]
        noise = [abs(first - second) for first, second in paired]
        return {"configs": len(values), "seeds": min(len(s) for s in self.runs.values()),
                "best_test_f1": round(values[-1], 2), "median_test_f1": round(statistics.median(values), 2),
                "worst_test_f1": round(values[0], 2),
                "best_minus_median": round(values[-1] - statistics.median(values), 2),
                "grid_pick_regret": round(self.grid_pick_regret, 2),
                "seed_noise": round(statistics.fmean(noise), 2) if noise else None,
                # Does seed 2 rank the configs as seed 1 does? Near 0: one trial's score says little.
                "seed_rank_correlation": round(_rank_correlation(*zip(*paired)), 2) if len(paired) > 2 else None}


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


def _rank_correlation(first: tuple[float, ...], second: tuple[float, ...]) -> float:
    """Spearman's rho: Pearson's correlation of the ranks."""
    return statistics.correlation(_ranks(first), _ranks(second))


def _test_at_best_dev(epochs: list[dict]) -> float:
    best = max(epochs, key=lambda e: e["dev_f1"])  # the first epoch of the best dev F1, as the trainer keeps
    return best["test_f1"]


@dataclass
class Replay:
    """One replayed search: what it built, and its regret after each trial."""

    sampler: Any
    searcher: Any
    scheduler: Any
    study: optuna.Study
    trace: list[tuple[float, float]] = field(default_factory=list)
    """(cumulative steps / grid cost, regret) after each trial."""
    trials: int = 0
    pruned: int = 0


class _Trial:
    """What ASHA keys its rungs by (Tune's Trial); the replay has no other trial state."""

    def __init__(self, trial_id: str):
        self.trial_id = trial_id


def replay(table: Table, space: SearchSpace, base: RunConfig, sampler_name: str, scheduler_name: str, seed: int,
           *, priors: list | None = None, budget: float = 1.0, grace_period: int = 1) -> Replay:
    """One search on ``table``, built by the factories ``search`` uses, until ``budget`` x the grid's cost."""
    import numpy as np
    from ray.tune.schedulers import TrialScheduler

    np.random.seed(seed)  # ASHA draws its bracket from numpy's global generator
    rng = random.Random(seed)
    storage = optuna.storages.InMemoryStorage()
    name = f"replay-{table.target}-{sampler_name}-{scheduler_name}-{seed}"
    if priors:
        study = optuna.create_study(storage=storage, study_name=name,
                                    direction="maximize" if space.mode == "max" else "minimize")
        seed_study(study, priors, space, top=WARM_START_TOP)
    sampler = build_sampler(sampler_name, seed, space)
    searcher = build_searcher(space, sampler, study_name=name, storage=storage)
    scheduler = build_scheduler(scheduler_name, space=space, base=base, grace_period=grace_period)
    run = Replay(sampler, searcher, scheduler, searcher._ot_study)
    spent, incumbent = 0.0, None  # incumbent: (best dev F1, config key) of the completed trials
    while spent < budget * table.grid_cost:
        trial_id = f"t{run.trials:05d}"
        config = searcher.suggest(trial_id)
        key = config_key({name: config[name] for name in space.names if name in config})
        epochs = rng.choice(table.runs[key])
        trial = _Trial(trial_id)
        scheduler.on_trial_add(None, trial)
        best_dev, stopped = 0.0, False
        for entry in epochs:
            best_dev = max(best_dev, entry["dev_f1"])
            spent += entry["steps"]
            result = {space.metric: best_dev, "epoch": entry["epoch"], "epochs_total": len(epochs),
                      "training_iteration": entry["epoch"]}
            searcher.on_trial_result(trial_id, result)
            if scheduler.on_trial_result(None, trial, result) == TrialScheduler.STOP and entry["epoch"] < len(epochs):
                stopped = True
                break
        searcher.on_trial_complete(trial_id, result)
        if stopped:
            scheduler.on_trial_remove(None, trial)
            run.pruned += 1
        else:
            scheduler.on_trial_complete(None, trial, result)
            if incumbent is None or best_dev > incumbent[0]:
                incumbent = (best_dev, key)
        run.trials += 1
        regret = table.best_test - (table.mean_test[incumbent[1]] if incumbent else table.worst_test)
        run.trace.append((spent / table.grid_cost, regret))
    return run


def cost_to_within(trace: list[tuple[float, float]], f1: float = 1.0) -> float:
    return next((min(cost, 1.0) for cost, regret in trace if regret <= f1), 1.0)


def regret_at(trace: list[tuple[float, float]], cost: float, start: float) -> float:
    """The regret once ``cost`` (a fraction of the grid's) is spent; ``start`` before any trial ended."""
    regret = start
    for spent, value in trace:
        if spent > cost + 1e-9:
            break
        regret = value
    return regret


def quartiles(values: list[float]) -> tuple[float, float, float]:
    q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else (values[0],) * 3
    return q1, median, q3


def run_strategies(tables: dict[str, Table], space: SearchSpace, repetitions: int, strategies: list[str],
                   say) -> dict[str, dict[str, Any]]:
    base = {target: RunConfig(**BASE, target=target) for target in tables}
    targets = list(tables)
    summary: dict[str, dict[str, Any]] = {}
    for name in strategies:
        sampler, scheduler, warm = STRATEGIES[name]
        started = time.monotonic()
        costs, to_pick, finals, curves, trials, pruned = [], [], [], defaultdict(list), [], []
        costs_by_target: dict[str, list[float]] = defaultdict(list)
        for target in targets:
            table = tables[target]
            other = next((t for t in targets if t != target), None)
            for repetition in range(repetitions):
                priors = None
                if warm:
                    if other is None:
                        raise SystemExit("warm_tpe_asha needs two targets (--targets tk,qu)")
                    # The earlier search: TPE+ASHA on the other target, seeded apart from this one.
                    earlier = replay(tables[other], space, base[other], "tpe", "asha", 10_000 + repetition)
                    priors = priors_from_study(f"{other}-search", earlier.study, space)
                run = replay(table, space, base[target], sampler, scheduler, repetition, priors=priors)
                costs.append(cost_to_within(run.trace))
                costs_by_target[target].append(costs[-1])
                to_pick.append(cost_to_within(run.trace, table.grid_pick_regret + 1e-6))
                finals.append(run.trace[-1][1])
                trials.append(run.trials)
                pruned.append(run.pruned)
                start = table.best_test - table.worst_test
                for point in CURVE_POINTS:
                    curves[point].append(regret_at(run.trace, point, start))
        q1, median, q3 = quartiles(finals)
        summary[name] = {
            "cost_to_within_1f1": round(statistics.median(costs), 3),
            "cost_to_within_1f1_quartiles": [round(v, 3) for v in quartiles(costs)[::2]],
            # Per target: a warm start transfers one way at a time (qu from tk's search, tk from qu's).
            "cost_to_within_1f1_by_target": {target: round(statistics.median(values), 3)
                                             for target, values in costs_by_target.items()},
            "cost_to_grid_pick": round(statistics.median(to_pick), 3),
            "final_regret": {"q1": round(q1, 2), "median": round(median, 2), "q3": round(q3, 2)},
            "regret_at_cost": {str(point): [round(v, 2) for v in quartiles(curves[point])] for point in CURVE_POINTS},
            "trials_per_search": round(statistics.fmean(trials), 1),
            "pruned_per_search": round(statistics.fmean(pruned), 1),
            "replays": len(costs),
            "seconds": round(time.monotonic() - started, 1),
        }
        row = summary[name]
        say(f"{name}: cost_to_within_1f1 {row['cost_to_within_1f1']} "
            f"(quartiles {row['cost_to_within_1f1_quartiles']}; by target "
            f"{', '.join(f'{t} {v}' for t, v in row['cost_to_within_1f1_by_target'].items())}), "
            f"to the grid's pick {row['cost_to_grid_pick']}, "
            f"final regret median {row['final_regret']['median']} [{row['final_regret']['q1']}, "
            f"{row['final_regret']['q3']}], {row['trials_per_search']} trials ({row['pruned_per_search']} pruned) "
            f"per search, {row['replays']} replays in {row['seconds']} s")
    return summary


def plot(summary: dict[str, dict[str, Any]], path: Path, targets: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.2))
    for name, row in summary.items():
        points = [float(p) for p in row["regret_at_cost"]]
        q1, median, q3 = zip(*row["regret_at_cost"].values())
        line, = axes.plot(points, median, label=name.replace("_", "+").replace("warm+", "warm "))
        axes.fill_between(points, q1, q3, color=line.get_color(), alpha=0.15)
    axes.axhline(1.0, color="grey", linestyle=":", linewidth=1)
    axes.set_xlabel("cost spent (fraction of training every grid config once)")
    axes.set_ylabel("regret (test F1 points)")
    axes.set_title(f"Regret vs cost: median and quartiles over replays ({' and '.join(targets)})")
    axes.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", type=Path, default=DEFAULT_SPACE, help="The grid (all-categorical space).")
    parser.add_argument("--table", type=Path, default=DEFAULT_TABLE, help="The table's JSONL (built where missing).")
    parser.add_argument("--targets", default="tk,qu")
    parser.add_argument("--seeds", type=int, default=2, help="Training seeds per config in the table.")
    parser.add_argument("--jobs", type=int, default=1, help="Trainings at a time while building (one thread each).")
    parser.add_argument("--model", default=BASE["model"], help="The table's model (tests use tiny).")
    parser.add_argument("--build-only", action="store_true", help="Build the table, do not replay.")
    parser.add_argument("--repetitions", type=int, default=15,
                        help="Replays per strategy and target (15 x 2 targets = 30 per strategy).")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--plot", type=Path, default=DEFAULT_PLOT)
    args = parser.parse_args()

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    space = load_space(args.space)
    targets = args.targets.split(",")
    rows = build(space, args.table, targets, list(range(1, args.seeds + 1)), jobs=args.jobs, model=args.model, say=say)
    if args.build_only:
        return
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    import warnings

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    # GP's ask runs inside the define-by-run space and takes over Ray's 1 s warning threshold.
    warnings.filterwarnings("ignore", message="Define-by-run function")
    tables = {target: Table(rows, target) for target in targets}
    for target, table in tables.items():
        signal = table.signal()
        say(f"table {target}: {json.dumps(signal)}")
        if signal["best_minus_median"] <= 1.0:
            say(f"table {target}: no signal - the best and the median config are within 1 F1")
    started = time.monotonic()
    summary = run_strategies(tables, space, args.repetitions, args.strategies.split(","), say)
    plot(summary, args.plot, targets)
    say(f"curves: {args.plot}")
    figures = {
        "random_cost_to_within_1f1": summary.get("random_fifo", {}).get("cost_to_within_1f1"),
        "tpe_fifo_cost_to_within_1f1": summary.get("tpe_fifo", {}).get("cost_to_within_1f1"),
        "tpe_asha_cost_to_within_1f1": summary.get("tpe_asha", {}).get("cost_to_within_1f1"),
        "gp_cost_to_within_1f1": summary.get("gp_fifo", {}).get("cost_to_within_1f1"),
        "warm_tpe_asha_cost_to_within_1f1": summary.get("warm_tpe_asha", {}).get("cost_to_within_1f1"),
    }
    random_cost, tpe_asha = figures["random_cost_to_within_1f1"], figures["tpe_asha_cost_to_within_1f1"]
    figures["tpe_asha_over_random"] = round(tpe_asha / random_cost, 3) if random_cost and tpe_asha is not None else None
    figures["cost_to_grid_pick"] = {name: row["cost_to_grid_pick"] for name, row in summary.items()}
    figures["final_regret_median"] = {name: row["final_regret"]["median"] for name, row in summary.items()}
    # Early on is where a warm start pays: the median regret once a tenth of the grid's cost is spent.
    figures["regret_median_at_0.1"] = {name: row["regret_at_cost"]["0.1"][1] for name, row in summary.items()}
    figures["cost_to_within_1f1_by_target"] = {name: row["cost_to_within_1f1_by_target"]
                                               for name, row in summary.items()}
    figures["repetitions_per_target"] = args.repetitions
    figures["signal"] = {target: table.signal()["best_minus_median"] for target, table in tables.items()}
    figures["seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
