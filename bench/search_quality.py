"""How fast does a search find the best config, and can its winner be trusted? A tabular benchmark
(HPOBench/YAHPO style).

The table (bench/search_quality_table.py, committed as bench/data/search_quality_table.jsonl):
every point of bench/data/search_quality_space.yaml (3 meta lrs x 2 bottlenecks x 4 placements
x 2 sources = 48 configs) trained for real on tiny-pretrained synthetic NER, for targets tk and
qu, with per-epoch dev F1, test F1 and optimizer steps, one line per (target, config, seed). The
replay uses whatever seeds the table has and prints how many each config has; ``--seeds 1-8``
trains the missing lines first (appended; the lines there are kept as they are).

The replays run searches on the table: the trial body looks the config up instead of training.
They are an in-process equivalent of ``search``, not Ray Tune runs: the same factories
(metaxl_tune/search/space/strategy.py: ``build_sampler``, ``build_searcher`` -> the space's
define-by-run ``sample`` inside PruningAwareOptunaSearch, ``build_scheduler`` -> Tune's own
ASHAScheduler or FIFOScheduler), the same warm start (metaxl_tune/search/driver/warm_start.py) and
the same racing policy (metaxl_tune/search/space/racing.py, through search_quality_racing.py),
driven through their interfaces one trial at a time, with an in-memory Optuna study. A config's
k-th trial trains with the replay's k-th seed (one shuffled order of the table's seeds), so a
config run again sees a new seed, as in a real search.

Two families, the truth of a config being its mean test F1 (test F1 at the best dev epoch):

- One seed per trial (the old keys; incumbent = the config of the completed trial with the best
  dev F1): random+FIFO, TPE+FIFO, TPE+ASHA, GP+FIFO, and TPE+ASHA warm-started from a TPE+ASHA
  search on the other target (its best config run first), each to the full grid's cost (every
  config trained to its end once). ``cost_to_within_1f1``: the fraction of that cost spent when
  the regret first reaches <= 1 F1 (1.0 if never), median over the repetitions of both targets;
  ``cost_to_grid_pick``: the same for the regret of the config the whole grid picks (best mean dev F1).
- Seed-aware (search_quality_racing.py; incumbent = ``Race.incumbent()``, the best mean among the
  configs with the most completed seeds): TPE+ASHA ``--repeats 1``, ``--repeats 3``, racing
  (``auto``), and random+FIFO racing, at the grid's cost and at twice it, read against the mean
  of all seeds and (with >= 4 seeds a config) against held-out seeds no replay draws. Per strategy
  and budget: final regret, success rate (incumbent within 1 F1 of the best config), cost to
  within 1 F1, optimism gap (the incumbent's reported mean test F1 minus its true mean) and how
  often ASHA pruned a true top-3 config.

    .venv/bin/python bench/search_quality.py                  # replay the table as it is
    nice -n 15 .venv/bin/python bench/search_quality_table.py --seeds 1-8 --jobs 2   # add seeds

Last line: one JSON object: the old keys (random_cost_to_within_1f1, tpe_asha_cost_to_within_1f1,
gp_cost_to_within_1f1, warm_tpe_asha_cost_to_within_1f1, tpe_asha_over_random, ...), the seed-aware
keys of issue #25 (racing_final_regret_median, racing_success_rate, ..., top3_pruned_rate; at the
grid's cost unless named), the held-out reading's and its difference, and the table's signal.
The curves go to bench/data/search_quality_curves.png.
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
from search_quality_plot import plot  # noqa: E402
from search_quality_racing import BUDGETS, SEEDED_STRATEGIES, SEARCH_VIEW, SeedOrder, run_seeded, variants  # noqa: E402
from search_quality_table import BASE, build, config_key, parse_seeds, read_table, seed_counts  # noqa: E402
from search_quality_truth import HELD_OUT_MIN_SEEDS, READINGS, Table, quartiles  # noqa: E402

from metaxl_tune.config import RunConfig  # noqa: E402
from metaxl_tune.search.space.schema import SearchSpace, load_space  # noqa: E402
from metaxl_tune.search.space.strategy import build_sampler, build_scheduler, build_searcher  # noqa: E402
from metaxl_tune.search.driver.warm_start import priors_from_study, seed_study  # noqa: E402

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
    seeds = SeedOrder(table.reading("all"), random.Random(seed))
    runs: dict[str, int] = defaultdict(int)  # per config: trials started (its k-th trains seed k of the order)
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
        epochs = table.seeds[key][seeds.seed(key, runs[key])]
        runs[key] += 1
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


def seeded_figures(seeded: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The issue's last-line keys (at the grid's cost unless named), from one reading."""
    def get(label: str, budget: str, *path: str):
        value = seeded.get(label, {}).get(budget)
        for key in path:
            value = None if value is None else value.get(key)
        return value

    return {
        "racing_final_regret_median": get("racing", "1x", "final_regret", "median"),
        "racing_final_regret_q3": get("racing", "1x", "final_regret", "q3"),
        "racing_success_rate": get("racing", "1x", "success_rate"),
        "racing_success_rate_2x": get("racing", "2x", "success_rate"),
        "racing_cost_to_within_1f1": get("racing", "1x", "cost_to_within_1f1", "median"),
        "racing_optimism_gap_median": get("racing", "1x", "optimism_gap", "median"),
        "single_seed_optimism_gap_median": get("single_seed", "1x", "optimism_gap", "median"),
        "single_seed_final_regret_median": get("single_seed", "1x", "final_regret", "median"),
        "repeat3_final_regret_median": get("repeat3", "1x", "final_regret", "median"),
        "top3_pruned_rate": get("racing", "1x", "top3_pruned_rate"),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", type=Path, default=DEFAULT_SPACE, help="The grid (all-categorical space).")
    parser.add_argument("--table", type=Path, default=DEFAULT_TABLE, help="The table's JSONL.")
    parser.add_argument("--targets", default="tk,qu")
    parser.add_argument("--seeds", default=None,
                        help="Train the lines these seeds lack first (N, A-B or a comma list; "
                             "bench/search_quality_table.py). Default: replay the table as it is.")
    parser.add_argument("--jobs", type=int, default=1, help="Trainings at a time while building (one thread each).")
    parser.add_argument("--model", default=BASE["model"], help="The table's model (tests use tiny).")
    parser.add_argument("--build-only", action="store_true", help="Build the table (--seeds), do not replay.")
    parser.add_argument("--repetitions", type=int, default=15,
                        help="Replays per strategy and target (15 x 2 targets = 30 per strategy).")
    parser.add_argument("--strategies", default=",".join(STRATEGIES),
                        help=f"One-seed-per-trial strategies (the old keys): {', '.join(STRATEGIES)}.")
    parser.add_argument("--seeded", default=",".join(SEEDED_STRATEGIES),
                        help=f"Seed-aware strategies: {', '.join(SEEDED_STRATEGIES)} (empty: none).")
    parser.add_argument("--max-repeats", default="3,4",
                        help="Racing's --max-repeats to compare (the search's default is always run).")
    parser.add_argument("--plot", type=Path, default=DEFAULT_PLOT)
    args = parser.parse_args(argv)

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    old = [name for name in args.strategies.split(",") if name]
    new = [name for name in args.seeded.split(",") if name]
    unknown = [name for name in old if name not in STRATEGIES] + [name for name in new if name not in SEEDED_STRATEGIES]
    if unknown:
        parser.exit(2, f"--strategies/--seeded: unknown strategy {unknown[0]}; use {', '.join(STRATEGIES)} "
                       f"or {', '.join(SEEDED_STRATEGIES)}\n")
    try:
        seeds = parse_seeds(args.seeds) if args.seeds is not None else None
        max_repeats = tuple(int(value) for value in args.max_repeats.split(","))
    except ValueError as error:
        parser.exit(2, f"{error}\n" if str(error).startswith("--seeds") else
                    f"--max-repeats {args.max_repeats}: give a comma list of integers, e.g. 3,4\n")
    from metaxl_tune.search.space.errors import SpaceError

    try:
        space = load_space(args.space)
    except SpaceError as error:
        parser.exit(2, f"--space: {error}\n")
    targets = args.targets.split(",")
    if seeds is not None:
        rows = build(space, args.table, targets, seeds, jobs=args.jobs, model=args.model, say=say)
    else:
        rows = read_table(args.table)
    if args.build_only:
        return {}
    missing = [target for target in targets if not any(row["target"] == target for row in rows)]
    if missing:
        parser.exit(2, f"--table {args.table}: no lines for target {missing[0]}; add them with "
                       f"bench/search_quality_table.py --table {args.table} --targets {args.targets} --seeds 1-2\n")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    import warnings

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    # GP's ask runs inside the define-by-run space and takes over Ray's 1 s warning threshold.
    warnings.filterwarnings("ignore", message="Define-by-run function")
    tables = {target: Table(rows, target) for target in targets}
    signals = {}
    for target, table in tables.items():
        signals[target] = signal = table.signal()
        say(f"table {target}: {json.dumps(signal)}")
        if signal["best_minus_median"] <= 1.0:
            say(f"table {target}: no signal - the best and the median config are within 1 F1")
        if not signal["best_told_from_second"]:
            say(f"table {target}: the best config is {signal['best_minus_second']} F1 above the second, within the "
                f"standard error of that difference ({signal['best_minus_second_standard_error']}): the table "
                "cannot tell them apart, so a strategy that ends on the second best is not wrong by the data")
    fewest = min(table.min_seeds for table in tables.values())
    readings = {name: {target: table.reading(name) for target, table in tables.items()} for name in READINGS}
    if any(reading is None for reading in readings["held_out"].values()):
        del readings["held_out"]
        say(f"held-out reading skipped: it needs >= {HELD_OUT_MIN_SEEDS} seeds per config (half drawn, half judged); "
            f"the table has {fewest} for some config (bench/search_quality_table.py --seeds 1-8 adds seeds)")
    started = time.monotonic()
    summary = run_strategies(tables, space, args.repetitions, old, say) if old else {}
    seeded = run_seeded(tables, readings, space, args.repetitions,
                        variants(new, fewest, max_repeats=max_repeats), say) if new else {}
    plot(summary, seeded.get("all", {}), args.plot, targets)
    say(f"curves: {args.plot}")
    figures: dict[str, Any] = {
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
    figures.update(seeded_figures(seeded.get("all", {})))
    held_out = seeded.get("held_out")
    figures["held_out"] = seeded_figures(held_out) if held_out else None
    # How far the held-out reading lies from the all-seeds one (held-out minus all), per figure.
    figures["held_out_minus_all"] = ({key: round(value - figures[key], 3) for key, value in figures["held_out"].items()
                                      if value is not None and figures.get(key) is not None} if held_out else None)
    figures["strategies"] = {reading: {label: {budget: {key: row[budget][key] for key in (
        "final_regret", "success_rate", "cost_to_within_1f1", "optimism_gap", "top3_pruned_rate", "trials_per_search",
        "configs_per_search", "trainings_per_config")}
        for budget in (f"{b:g}x" for b in BUDGETS)} | {"repeats": row["repeats"], "max_repeats": row["max_repeats"],
                                                       # Runs past the table's seeds for a config (seeds reused).
                                                       "seed_reuses_per_search_at_2x": row["2x"][
                                                           "seed_reuses_per_search_at_2x"]}
        for label, row in rows_.items()} for reading, rows_ in seeded.items()}
    figures["sampler_view"] = SEARCH_VIEW
    figures["seeds_per_config"] = {target: table.seed_counts for target, table in tables.items()}
    figures["repetitions_per_target"] = args.repetitions
    figures["signal"] = {target: signal["best_minus_median"] for target, signal in signals.items()}
    figures["signal_detail"] = {target: {key: signal[key] for key in (
        "best_minus_median", "seed_noise", "seed_sd", "mean_standard_error", "best_minus_second",
        "best_minus_second_standard_error", "best_told_from_second")} for target, signal in signals.items()}
    figures["seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(figures))
    return {"summary": summary, "seeded": seeded, "figures": figures}


if __name__ == "__main__":
    main()
