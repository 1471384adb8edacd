"""How a search picks and stops trials: the Optuna sampler, the Tune scheduler and the searcher
that joins them to the space. ``search`` builds them here, and so does the tabular benchmark's
replay (bench/search_quality.py), so what the benchmark measures is what ``search`` runs.

Samplers (``--sampler``), all seeded by ``--search-seed``:

- ``tpe`` (default): Optuna's TPE with the constant liar (running trials count as bad guesses,
  so concurrent trials spread out). Any space: conditionals and every parameter type.
- ``random``: independent uniform draws. Any space.
- ``gp``: Optuna's Gaussian-process sampler. Categorical and numeric parameters, no ``when:``
  conditionals (it models only the parameters every trial shares and would draw the others at
  random).
- ``cmaes``, ``qmc``: CMA-ES and a scrambled Sobol sequence; numeric parameters only (both draw a
  categorical at random) and no conditionals.
- ``grid``: every point of a space whose parameters are all categorical (``paper-grid``), each
  once, in an order shuffled by the seed; ``--num-samples`` may not exceed the grid.

Refusals are :class:`~metaxl_tune.search.driver.runner.SearchError` lines naming the flag and the
parameter, raised before Ray starts. Only ``build_scheduler`` and ``build_searcher`` load Ray.
"""

from __future__ import annotations

from typing import Any

import optuna

from metaxl_tune.config import RunConfig
from metaxl_tune.search.space.racing import Race
from metaxl_tune.search.space.schema import SearchSpace

SAMPLERS = ("tpe", "random", "gp", "cmaes", "qmc", "grid")
SCHEDULERS = ("asha", "fifo")
ASHA_REDUCTION_FACTOR = 2


class StrategyError(ValueError):
    """The sampler or scheduler cannot run this space; the message names what to change."""


def check_sampler(name: str, space: SearchSpace, num_samples: int | None = None, runs_per_config: int = 1) -> None:
    """One line on the first reason ``name`` cannot search ``space`` (before any work).
    ``runs_per_config``: the most trials one config gets (seeds: --repeats N, or --max-repeats)."""
    if name not in SAMPLERS:
        raise StrategyError(f"--sampler {name}: unknown sampler; use one of {', '.join(SAMPLERS)}")
    conditional = next((p for p in space.parameters if p.when), None)
    categorical = next((p for p in space.parameters if p.type == "categorical"), None)
    if name == "grid":
        other = next((p for p in space.parameters if p.type != "categorical"), None)
        if other is not None:
            raise StrategyError(
                f"--sampler grid: {space.origin}: parameters.{other.name} is {other.type}; a grid enumerates "
                "categorical parameters only (e.g. --space paper-grid); use --sampler tpe for this space"
            )
        if conditional is not None:
            raise StrategyError(
                f"--sampler grid: {space.origin}: parameters.{conditional.name} has a when: condition; "
                "a grid enumerates unconditional parameters only; use --sampler tpe for this space"
            )
        size = len(space.grid())
        if num_samples is not None and num_samples > size * runs_per_config:
            runs = "once" if runs_per_config == 1 else f"at most {runs_per_config} times (--repeats, --max-repeats)"
            raise StrategyError(
                f"--num-samples {num_samples}: the grid of {space.origin} has {size} points and --sampler grid "
                f"runs each {runs}; use --num-samples {size * runs_per_config} or fewer"
            )
        return
    if name in ("gp", "cmaes", "qmc") and conditional is not None:
        raise StrategyError(
            f"--sampler {name}: {space.origin}: parameters.{conditional.name} has a when: condition, which {name} "
            "cannot model (it would draw it at random); use --sampler tpe or random for this space"
        )
    if name in ("cmaes", "qmc") and categorical is not None:
        raise StrategyError(
            f"--sampler {name}: {space.origin}: parameters.{categorical.name} is categorical, which {name} "
            "cannot model (it would draw it at random); use --sampler tpe, gp or random for this space"
        )


def grid_search_space(space: SearchSpace) -> dict[str, list[Any]]:
    return {parameter.name: list(parameter.values) for parameter in space.parameters}


def build_sampler(name: str, seed: int, space: SearchSpace) -> optuna.samplers.BaseSampler:
    """The Optuna sampler ``--sampler name --search-seed seed`` asks for (check_sampler first)."""
    check_sampler(name, space)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed)
    if name == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, scramble=True)
    return optuna.samplers.GridSampler(grid_search_space(space), seed=seed)


def max_epochs(space: SearchSpace, base: RunConfig) -> int:
    """The most epochs a trial can report: both stages (training, then back-off fine-tuning)."""
    parameters = {p.name: p for p in space.parameters}

    def largest(name: str) -> int:
        parameter = parameters.get(name)
        if parameter is not None:
            return int(max(parameter.values) if parameter.values else parameter.high)
        return int(space.fixed.get(name, getattr(base, name)))

    return largest("epochs") + largest("finetune_epochs")


def build_scheduler(name: str, *, space: SearchSpace, base: RunConfig, grace_period: int):
    """Tune's scheduler: ASHA (prune by epoch, halving) or FIFO (every trial to its end)."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if name not in SCHEDULERS:
        raise StrategyError(f"--scheduler {name}: use {' or '.join(SCHEDULERS)}")
    if name == "fifo":
        return FIFOScheduler()
    return ASHAScheduler(metric=space.metric, mode=space.mode, max_t=max_epochs(space, base),
                         grace_period=grace_period, reduction_factor=ASHA_REDUCTION_FACTOR)


def build_searcher(space: SearchSpace, sampler: optuna.samplers.BaseSampler, *, study_name: str,
                   storage: optuna.storages.BaseStorage | None, race: Race | None = None, search_seed: int = 0):
    """Ray Tune's Optuna searcher over the define-by-run space, telling Optuna which trials the
    scheduler pruned (pruning.PruningAwareOptunaSearch). ``storage`` None keeps the study in memory.

    With a ``race`` (racing.py; ``search`` always passes one, ``--repeats 1`` included), the
    searcher is wrapped in racing_search.RacingSearch: the race's repeats come first, every trial
    carries its config id, repeat and training seed ``paired_seed(search_seed, repeat)``."""
    from metaxl_tune.search.space.pruning import PruningAwareOptunaSearch

    searcher = PruningAwareOptunaSearch(space=space.sample, metric=space.metric, mode=space.mode, sampler=sampler,
                                        study_name=study_name, storage=storage)
    if race is None:
        return searcher
    from metaxl_tune.search.space.racing_search import RacingSearch

    return RacingSearch(searcher, race, search_seed=search_seed, searched=space.names)
