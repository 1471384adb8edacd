"""Seed-aware replays of the tabular benchmark: ``search --repeats 1|N|auto`` on the table.

Each replay runs one search through the objects ``search`` runs: the sampler and scheduler from
metaxl_tune/search/space/strategy.py, and ``build_searcher(..., race=Race(...))``, which returns
the search's own ``RacingSearch`` (metaxl_tune/search/space/racing_search.py) around the Optuna
searcher and the racing policy ``metaxl_tune.search.space.racing.Race``. The replay drives it
through Tune's searcher interface (``suggest``, ``on_trial_result``, ``on_trial_complete``) one
trial at a time, as the old replays in search_quality.py drive the Optuna searcher: the race
decides which config runs again and which is the incumbent; nothing of it is re-implemented here.

Seeds: a trial's config carries its ``repeat`` (the search trains it with ``paired_seed(search
seed, repeat)``); the replay trains run ``k`` of any config with the ``k``-th seed of one shuffled
order of the seeds the reading lets it draw (search_quality_truth.Reading), the same for every
config: paired seeds drawn without replacement, so a repeat sees a new seed as a real search
would. ``paired_seed``'s 32-bit values have no table lines, hence the order stands in for them.
A config run more often than the table has seeds for it (a sampler proposing a config again)
starts the order over; the replay counts these reuses. Racing and ``--repeats N`` are capped to
the seeds the table has (``repeats_cap``), and the output says so.

How the sampler sees a config's repeats (``view``):

- ``each`` (what ``search`` does, RacingSearch): every run is its own Optuna trial of the same
  point (a repeat is enqueued, then suggested), with its own value and its own pruned state.
- ``mean`` (replayed for comparison only; the replay's own glue around the same Race): only a
  config's first run is an Optuna trial; it stays open while the race runs the config and is told
  the mean of the config's completed runs once the race has decided about it (settled or
  dropped, no run going) when the sampler is next asked. Later top-up seeds of an incumbent are
  not seen again by the sampler.

The incumbent is ``Race.incumbent()`` (best mean among the configs with the most completed seeds).
Per trial the replay records the cost spent and the incumbent with its reported mean test F1
(over the runs the replay drew for it), so that regret and optimism are scored afterwards against
the reading's truth at any budget.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import optuna

from search_quality_table import config_key
from search_quality_truth import Reading, Table, test_at_best_dev

from metaxl_tune.config import RunConfig
from metaxl_tune.config.identity import config_id
from metaxl_tune.search.space import racing
from metaxl_tune.search.space.schema import SearchSpace
from metaxl_tune.search.space.strategy import build_sampler, build_scheduler, build_searcher

SEEDED_STRATEGIES: dict[str, tuple[str, str, str | int]] = {
    # name: (sampler, scheduler, --repeats)
    "single_seed": ("tpe", "asha", 1),
    "repeat3": ("tpe", "asha", 3),
    "racing": ("tpe", "asha", racing.REPEATS_AUTO),
    "random_racing": ("random", "fifo", racing.REPEATS_AUTO),
}
VIEWS = ("each", "mean")


class _Trial:
    """What ASHA keys its rungs by (Tune's Trial); the replay has no other trial state."""

    def __init__(self, trial_id: str):
        self.trial_id = trial_id


class SeedOrder:
    """The replay's paired seeds: run ``k`` of any config trains with the ``k``-th seed of one
    shuffled order of the reading's seeds (restricted to the seeds that config has)."""

    def __init__(self, reading: Reading, rng: random.Random):
        every = sorted({seed for seeds in reading.pool.values() for seed in seeds})
        rng.shuffle(every)
        self.order = every
        self.pool = {key: [seed for seed in every if seed in set(seeds)] for key, seeds in reading.pool.items()}
        self.reuses = 0

    def seed(self, key: str, run: int) -> int:
        seeds = self.pool[key]
        if run >= len(seeds):
            self.reuses += 1  # a real search would train a new seed; the table has none left
        return seeds[run % len(seeds)]


@dataclass
class Step:
    """The state after one trial ended."""

    cost: float
    """Cumulative optimizer steps / the grid's cost."""
    incumbent: str | None
    """Race.incumbent(), as the table's config key; None before any run completed."""
    reported: float | None
    """The incumbent's reported mean test F1: over the runs of it the replay completed."""
    seeds: int
    """The incumbent's completed runs."""
    pruned: str | None = None
    """The config key of this trial if ASHA stopped it before its last epoch."""
    config: str | None = None
    """The config key of this trial."""


@dataclass
class SeededReplay:
    race: Any
    study: optuna.Study
    searcher: Any = None
    """View each: the search's RacingSearch; view mean: the Optuna searcher."""
    steps: list[Step] = field(default_factory=list)
    trials: int = 0
    pruned: int = 0
    configs: set[str] = field(default_factory=set)
    seed_reuses: int = 0
    log: list[tuple[str, int, int, float | None]] = field(default_factory=list)
    """Per trial: (config key, repeat, table seed, value told to the race; None = pruned)."""


def repeats_cap(repeats: str | int, max_repeats: int, reading: Reading) -> tuple[str | int, int]:
    """``repeats`` and ``max_repeats`` no larger than the fewest seeds a config may draw."""
    seeds = min(len(pool) for pool in reading.pool.values())
    capped = repeats if repeats == racing.REPEATS_AUTO else min(int(repeats), seeds)
    return capped, min(max_repeats, seeds)


def _train(epochs: list[dict], trial_id: str, scheduler, metric: str, report) -> tuple[dict, bool, float]:
    """One run looked up in the table, epoch by epoch, as Tune drives a trial: each epoch's result
    to ``report`` (the searcher) and to the scheduler, which may stop it. Returns the last result,
    whether ASHA stopped it before its last epoch, and the optimizer steps it cost."""
    from ray.tune.schedulers import TrialScheduler

    trial = _Trial(trial_id)
    scheduler.on_trial_add(None, trial)
    best_dev, steps = 0.0, 0.0
    for entry in epochs:
        best_dev = max(best_dev, entry["dev_f1"])
        steps += entry["steps"]
        result = {metric: best_dev, "epoch": entry["epoch"], "epochs_total": len(epochs),
                  "training_iteration": entry["epoch"]}
        report(trial_id, result)
        if scheduler.on_trial_result(None, trial, result) == TrialScheduler.STOP and entry["epoch"] < len(epochs):
            scheduler.on_trial_remove(None, trial)
            return result, True, steps
    scheduler.on_trial_complete(None, trial, result)
    return result, False, steps


def seeded_replay(table: Table, reading: Reading, space: SearchSpace, base: RunConfig, sampler_name: str,
                  scheduler_name: str, repeats: str | int, seed: int, *, budget: float = 2.0,
                  max_repeats: int = racing.DEFAULT_MAX_REPEATS, view: str = "each",
                  grace_period: int = 1) -> SeededReplay:
    """One search on ``table`` with ``--repeats repeats``, until ``budget`` x the grid's cost.

    View ``each`` is ``search`` itself: ``build_searcher(..., race=Race(...))`` returns the
    search's RacingSearch, driven through Tune's interface (it asks the race, enqueues repeats,
    tells the race each run's end). View ``mean`` is the replay's own glue around the same Race
    and searcher factories (no ``search`` runs it)."""
    import numpy as np

    if view not in VIEWS:
        raise ValueError(f"view {view}: use one of {', '.join(VIEWS)}")
    np.random.seed(seed)  # ASHA draws its bracket from numpy's global generator
    seeds = SeedOrder(reading, random.Random(seed))
    storage = optuna.storages.InMemoryStorage()
    name = f"replay-{table.target}-{reading.name}-{sampler_name}-{scheduler_name}-{repeats}-{view}-{seed}"
    repeats, max_repeats = repeats_cap(repeats, max_repeats, reading)
    race = racing.Race(repeats, max_repeats, space.mode)  # as the search's runner builds it
    sampler = build_sampler(sampler_name, seed, space)
    if view == "each":
        searcher = build_searcher(space, sampler, study_name=name, storage=storage, race=race, search_seed=seed)
        optuna_searcher = searcher.searcher
    else:
        searcher = optuna_searcher = build_searcher(space, sampler, study_name=name, storage=storage)
    scheduler = build_scheduler(scheduler_name, space=space, base=base, grace_period=grace_period)
    run = SeededReplay(race, optuna_searcher._ot_study, searcher=searcher)
    keys: dict[str, str] = {}  # config id -> table key
    tests: dict[str, dict[int, float]] = defaultdict(dict)  # config id -> run -> test F1 at its best dev epoch
    open_trials: dict[str, tuple[str, dict]] = {}  # view "mean": config id -> (its sampler trial, first result)
    spent = 0.0

    def tell_decided() -> None:
        for cid in [cid for cid in open_trials if race.state(cid) in (racing.SETTLED, racing.DROPPED)
                    and not any(running == cid for running, _ in race.running())]:
            trial_id, first = open_trials.pop(cid)
            mean = race.summary().get(cid)
            result = first if mean is None else {**first, space.metric: mean[0], "epoch": first["epochs_total"]}
            optuna_searcher.on_trial_complete(trial_id, result)

    def ignore(trial_id: str, result: dict) -> None:
        pass

    while spent < budget * table.grid_cost:
        trial_id = f"t{run.trials:05d}"
        if view == "each":
            config = searcher.suggest(trial_id)  # the race's repeat, else the sampler's config
            cid, index = config[racing.CONFIG_ID_KEY], config[racing.REPEAT_KEY]
            params = {name: config[name] for name in space.names if name in config}
            told = True
        else:
            repeat = race.next_repeat()
            told = repeat is None  # the sampler sees only the configs it proposed
            if repeat is None:
                tell_decided()
                config = searcher.suggest(trial_id)
                params = {name: config[name] for name in space.names if name in config}
                cid = config_id(params)
                index = race.next_index(cid)  # a config proposed again gets a new seed
            else:
                cid, params, index = repeat.config_id, repeat.params, repeat.repeat
            race.started(cid, params, index)
        key = keys.setdefault(cid, config_key(params))
        table_seed = seeds.seed(key, index)
        run.configs.add(key)
        epochs = table.seeds[key][table_seed]
        result, stopped, steps = _train(epochs, trial_id, scheduler, space.metric,
                                        searcher.on_trial_result if told else ignore)
        spent += steps
        run.pruned += stopped
        if not stopped:
            tests[cid][index] = test_at_best_dev(epochs)
        if view == "each":
            searcher.on_trial_complete(trial_id, result)  # tells Optuna and the race (None if pruned)
        else:
            race.finished(cid, index, None if stopped else result[space.metric])
            if told and index == 0:
                open_trials[cid] = (trial_id, result)  # told once the race has decided about it
            elif told:
                searcher.on_trial_complete(trial_id, result)
        run.log.append((key, index, table_seed, None if stopped else result[space.metric]))
        run.trials += 1
        incumbent = race.incumbent()
        reported = (sum(tests[incumbent].values()) / len(tests[incumbent])) if incumbent else None
        run.steps.append(Step(spent / table.grid_cost, keys[incumbent] if incumbent else None, reported,
                              len(tests[incumbent]) if incumbent else 0, key if stopped else None, key))
    run.seed_reuses = seeds.reuses
    return run


# ---- scoring -----------------------------------------------------------------------------------------

WITHIN = 1.0
"""F1 points: a search has succeeded when its incumbent's true mean is within this of the best's."""
TOP = 3


def at_budget(steps: list[Step], budget: float) -> list[Step]:
    """The steps of the search had it stopped at ``budget``: up to the trial that crossed it."""
    end = next((index for index, step in enumerate(steps) if step.cost >= budget - 1e-9), len(steps) - 1)
    return steps[: end + 1]


def score(steps: list[Step], reading: Reading, budget: float) -> dict[str, Any]:
    """One replay's figures at ``budget``, against ``reading``'s truth."""
    steps = at_budget(steps, budget)
    regrets = [reading.best - (reading.truth[step.incumbent] if step.incumbent else reading.worst) for step in steps]
    last = steps[-1]
    # The last time the regret was above the bar: the search stays within it from the next trial on.
    above = [index for index, regret in enumerate(regrets) if regret > WITHIN]
    return {
        "final_regret": regrets[-1],
        "success": regrets[-1] <= WITHIN,
        "cost_to_within_1f1": next((min(step.cost, budget) for step, regret in zip(steps, regrets)
                                    if regret <= WITHIN), budget),
        "cost_to_stay_within_1f1": (budget if regrets[-1] > WITHIN
                                    else min(steps[above[-1] + 1 if above else 0].cost, budget)),
        "optimism_gap": (last.reported - reading.truth[last.incumbent]) if last.incumbent else None,
        "incumbent_seeds": last.seeds,
        "top3_pruned": bool({step.pruned for step in steps if step.pruned} & reading.top(TOP)),
        "trials": len(steps),
        "configs": len({step.config for step in steps}),
        "pruned": sum(step.pruned is not None for step in steps),
        "regrets": [(step.cost, regret) for step, regret in zip(steps, regrets)],
    }


# ---- strategies ----------------------------------------------------------------------------------------

BUDGETS = (1.0, 2.0)
CURVE_POINTS = [round(0.05 * i, 2) for i in range(1, 41)]
SEARCH_VIEW = "each"
"""How ``search`` lets the sampler see repeats; the other view is replayed beside it for comparison."""


@dataclass(frozen=True)
class Variant:
    label: str
    strategy: str
    view: str
    max_repeats: int


def variants(strategies: list[str], seeds: int, views: tuple[str, ...] = VIEWS,
             max_repeats: tuple[int, ...] = (racing.DEFAULT_MAX_REPEATS,)) -> list[Variant]:
    """Each strategy as ``search`` runs it, plus, where it can differ: the sampler's other view of
    repeats (TPE with repeats only) and other ``--max-repeats`` the table's ``seeds`` can tell apart."""
    default = racing.DEFAULT_MAX_REPEATS
    chosen = []
    for name in strategies:
        sampler, _, repeats = SEEDED_STRATEGIES[name]
        chosen.append(Variant(name, name, SEARCH_VIEW, default))
        if sampler != "random" and repeats != 1:
            chosen += [Variant(f"{name}@{view}", name, view, default) for view in views if view != SEARCH_VIEW]
        if repeats == racing.REPEATS_AUTO:
            chosen += [Variant(f"{name}@max{value}", name, SEARCH_VIEW, value) for value in max_repeats
                       if value != default and min(value, seeds) != min(default, seeds)]
    return chosen


def _quantiles(values: list[float]) -> dict[str, float]:
    from search_quality_truth import percentile

    return {"q1": round(percentile(values, 0.25), 2), "median": round(percentile(values, 0.5), 2),
            "q3": round(percentile(values, 0.75), 2), "p90": round(percentile(values, 0.9), 2)}


def summarize(scores: list[dict[str, Any]], runs: list[SeededReplay]) -> dict[str, Any]:
    """One variant's figures at one budget, over its replays."""
    import statistics

    regret = _quantiles([s["final_regret"] for s in scores])
    reach = _quantiles([s["cost_to_within_1f1"] for s in scores])
    stay = _quantiles([s["cost_to_stay_within_1f1"] for s in scores])
    gaps = [s["optimism_gap"] for s in scores if s["optimism_gap"] is not None]
    gap = _quantiles(gaps) if gaps else None
    return {
        "final_regret": {key: regret[key] for key in ("q1", "median", "q3")},
        "success_rate": round(statistics.fmean(s["success"] for s in scores), 3),
        "cost_to_within_1f1": {"median": reach["median"], "q3": reach["q3"]},
        "cost_to_stay_within_1f1": {"median": stay["median"], "q3": stay["q3"]},
        "optimism_gap": {"median": gap["median"], "p90": gap["p90"]} if gap else None,
        "top3_pruned_rate": round(statistics.fmean(s["top3_pruned"] for s in scores), 3),
        "incumbent_seeds_median": statistics.median(s["incumbent_seeds"] for s in scores),
        "trials_per_search": round(statistics.fmean(s["trials"] for s in scores), 1),
        "pruned_per_search": round(statistics.fmean(s["pruned"] for s in scores), 1),
        "configs_per_search": round(statistics.fmean(s["configs"] for s in scores), 1),
        # What racing costs per config it looks at: trainings (seeds and paired runs) per config.
        "trainings_per_config": round(statistics.fmean(s["trials"] / s["configs"] for s in scores), 2),
        "seed_reuses_per_search_at_2x": round(statistics.fmean(run.seed_reuses for run in runs), 2),
    }


def run_seeded(tables: dict[str, Table], readings: dict[str, dict[str, Reading]], space: SearchSpace,
               repetitions: int, chosen: list[Variant], say) -> dict[str, dict[str, Any]]:
    """Per reading and variant: ``repetitions`` replays per target at twice the grid's cost, scored
    at the grid's cost and at twice it. ``readings``: reading name -> target -> Reading."""
    import time

    from search_quality_table import BASE

    base = {target: RunConfig(**BASE, target=target) for target in tables}
    summary: dict[str, dict[str, Any]] = {}
    for reading_name, by_target in readings.items():
        summary[reading_name] = {}
        for variant in chosen:
            sampler, scheduler, repeats = SEEDED_STRATEGIES[variant.strategy]
            started = time.monotonic()
            runs, scores = [], {budget: [] for budget in BUDGETS}
            curves: dict[float, list[float]] = defaultdict(list)
            for target, table in tables.items():
                reading = by_target[target]
                for repetition in range(repetitions):
                    run = seeded_replay(table, reading, space, base[target], sampler, scheduler, repeats, repetition,
                                        budget=max(BUDGETS), max_repeats=variant.max_repeats, view=variant.view)
                    runs.append(run)
                    for budget in BUDGETS:
                        scores[budget].append(score(run.steps, reading, budget))
                    regrets = scores[max(BUDGETS)][-1]["regrets"]
                    for point in CURVE_POINTS:
                        value = reading.best - reading.worst
                        for cost, regret in regrets:
                            if cost > point + 1e-9:
                                break
                            value = regret
                        curves[point].append(value)
            capped = repeats_cap(repeats, variant.max_repeats, next(iter(by_target.values())))
            row = {f"{budget:g}x": summarize(scores[budget], runs) for budget in BUDGETS}
            row.update(strategy=variant.strategy, view=variant.view, repeats=capped[0], max_repeats=capped[1],
                       replays=len(runs), seconds=round(time.monotonic() - started, 1),
                       regret_at_cost={str(p): [round(v, 2) for v in _quantiles(curves[p]).values()][:3]
                                       for p in CURVE_POINTS})
            summary[reading_name][variant.label] = row
            one = row["1x"]
            say(f"[{reading_name}] {variant.label}: final regret {one['final_regret']['median']} "
                f"[{one['final_regret']['q1']}, {one['final_regret']['q3']}] (2x {row['2x']['final_regret']['median']}), "
                f"success {one['success_rate']} (2x {row['2x']['success_rate']}), cost_to_within_1f1 "
                f"{one['cost_to_within_1f1']['median']} (q3 {one['cost_to_within_1f1']['q3']}), optimism gap "
                f"{one['optimism_gap']}, top-3 pruned {one['top3_pruned_rate']}, {one['trials_per_search']} trials "
                f"({one['pruned_per_search']} pruned) on {one['configs_per_search']} configs, repeats {capped[0]} max {capped[1]}, "
                f"{len(runs)} replays in {row['seconds']} s")
    return summary
