"""Warm start: earlier searches' trials as prior observations of a new search's Optuna study.

``search --warm-start tk-search[,other]`` reads the finished (COMPLETE) and pruned (PRUNED) trials
of those searches from their Optuna journals, checks them against the new space (every parameter
in it, every value inside its distribution, the same metric and mode) and adds them to the new
study with their values, their per-epoch intermediate values and their state, tagged with the
search they came from (user attribute ``warm_start_from``). The sampler then models them as its
own history: TPE's start-up trials are already there, so it proposes from the first trial on.
``--warm-start-top K`` also enqueues the K best distinct configs as the first trials to run.

A prior trial keeps its config id, repeat and seed (racing_search.py's user attributes): when the
new search runs a config an earlier search ran, the race counts the earlier seeds in its mean and
gives it its next seed. A prior trial is the earlier search's, not this one's: the search's counts and its best leave
them out (:func:`own_trials`). Only a search's own trials are carried over, so warm-starting
from a search that was itself warm-started does not bring in its priors twice. Seeding is
idempotent (a study that already holds prior trials gets none again), so a ``--resume`` neither
duplicates nor loses them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from metaxl_tune.search.space.racing import CONFIG_ID_KEY, REPEAT_KEY, SEED_KEY
from metaxl_tune.search.space.schema import SearchSpace, SpaceError, load_space

WARM_START_FROM = "warm_start_from"
"""User attribute of a prior trial: the search it came from."""
WARM_START_NUMBER = "warm_start_number"
"""User attribute of a prior trial: its number in that search's study."""
WARM_START_RANK = "warm_start_rank"
"""User attribute of an enqueued trial (--warm-start-top): 1 for the earlier searches' best."""


class WarmStartError(ValueError):
    """The earlier searches cannot seed this one; the message says which and why."""


@dataclass(frozen=True, kw_only=True)  # two dicts and two numbers: named at every call
class PriorTrial:
    search: str
    number: int
    state: TrialState
    params: dict[str, Any]
    value: float | None
    intermediate_values: dict[int, float] = field(default_factory=dict)
    race: dict[str, Any] = field(default_factory=dict)
    """Its config id, repeat and seed (racing_search.py's user attributes), when it has them: a
    racing search counts a prior config's seeds."""


class _DistributionOf:
    """Stands in for an Optuna trial: what a parameter's ``suggest`` asks for, as a distribution."""

    def suggest_categorical(self, name: str, choices: list) -> BaseDistribution:
        return CategoricalDistribution(choices)

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> BaseDistribution:
        return IntDistribution(low, high, step=step, log=log)

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> BaseDistribution:
        return FloatDistribution(low, high, log=log)


def distributions(space: SearchSpace) -> dict[str, BaseDistribution]:
    """Each parameter's Optuna distribution, exactly as ``space.sample`` suggests it."""
    probe = _DistributionOf()
    return {parameter.name: parameter.suggest(probe) for parameter in space.parameters}


def _inside(distribution: BaseDistribution, value: Any) -> bool:
    try:
        return distribution._contains(distribution.to_internal_repr(value))
    except (ValueError, TypeError):
        return False


def parse_names(text: str | Iterable[str] | None) -> list[str]:
    if text is None:
        return []
    from metaxl_tune.common.names import check_name

    parts = text.split(",") if isinstance(text, str) else list(text)
    # Each name becomes a path under --storage: the one name rule (common/names.py) applies.
    return list(dict.fromkeys(check_name(part.strip(), "--warm-start") for part in parts if part.strip()))


def load_prior_trials(names: list[str], storage: str, space: SearchSpace, *, new_name: str) -> list[PriorTrial]:
    """The finished and pruned trials of the searches ``names`` under ``storage``, checked against
    ``space``; one line on the first thing that does not fit."""
    from metaxl_tune.search.driver.options import OPTIONS_FILE, SearchError, SearchOptions, apply_preset, load_search_study

    if new_name in names:
        raise WarmStartError(f"--warm-start {new_name}: a search cannot warm-start from itself; name earlier searches")
    priors: list[PriorTrial] = []
    for name in names:
        if not (Path(storage) / name / OPTIONS_FILE).is_file():
            raise WarmStartError(f"--warm-start {name}: no search named {name} in {storage}; "
                                 "check --warm-start and --storage (the earlier searches must share it)")
        try:
            options = apply_preset(SearchOptions.load(storage, name))
        except SearchError as error:
            raise WarmStartError(f"--warm-start {name}: {error}") from None
        try:
            earlier = load_space(options.space)
        except SpaceError as error:
            raise WarmStartError(f"--warm-start {name}: cannot read its space ({error})") from None
        if (earlier.metric, earlier.mode) != (space.metric, space.mode):
            raise WarmStartError(
                f"--warm-start {name}: it optimised {earlier.metric} ({earlier.mode}), this search {space.metric} "
                f"({space.mode}) in {space.origin}; warm-start only from searches of the same metric and mode"
            )
        try:
            study = load_search_study(options)
        except KeyError:
            raise WarmStartError(f"--warm-start {name}: no Optuna study in {options.experiment_dir}; "
                                 "it never started a trial") from None
        priors.extend(priors_from_study(name, study, space))
    if names and not priors:
        raise WarmStartError(f"--warm-start {','.join(names)}: no finished or pruned trials to start from; "
                             "warm-start from searches that ran trials")
    return priors


def priors_from_study(search: str, study: optuna.Study, space: SearchSpace) -> list[PriorTrial]:
    """The search's own finished and pruned trials, each checked against ``space``."""
    wanted = distributions(space)
    return [_checked(search, trial, wanted, space)
            for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
            # that search's own priors are taken from where they came from, once
            if WARM_START_FROM not in trial.user_attrs]


def _checked(search: str, trial: FrozenTrial, wanted: dict[str, BaseDistribution], space: SearchSpace) -> PriorTrial:
    for name, value in trial.params.items():
        if name not in wanted:
            raise WarmStartError(
                f"--warm-start {search}: its trial {trial.number} searched {name}, which {space.origin} does not; "
                f"warm-start from a search over the same parameters (searched here: {', '.join(wanted)})"
            )
        if not _inside(wanted[name], value):
            raise WarmStartError(
                f"--warm-start {search}: its trial {trial.number} has {name}={value!r}, outside {space.origin}'s "
                f"{_describe(wanted[name])}; widen the space or warm-start from a search over the same values"
            )
    return PriorTrial(search=search, number=trial.number, state=trial.state, params=dict(trial.params),
                      value=trial.value if trial.state == TrialState.COMPLETE else None,
                      intermediate_values=dict(trial.intermediate_values),
                      race={key: trial.user_attrs[key] for key in (CONFIG_ID_KEY, REPEAT_KEY, SEED_KEY)
                            if key in trial.user_attrs})


def _describe(distribution: BaseDistribution) -> str:
    if isinstance(distribution, CategoricalDistribution):
        return f"values {list(distribution.choices)}"
    return f"range [{distribution.low}, {distribution.high}]"


def has_prior_trials(study: optuna.Study) -> bool:
    return any(WARM_START_FROM in trial.user_attrs for trial in study.get_trials(deepcopy=False))


def seed_study(study: optuna.Study, priors: list[PriorTrial], space: SearchSpace, *, top: int = 0) -> int:
    """Add ``priors`` to ``study`` (and enqueue the ``top`` best configs); idempotent. Returns how
    many prior trials the study holds."""
    if has_prior_trials(study):
        return sum(1 for trial in study.get_trials(deepcopy=False) if WARM_START_FROM in trial.user_attrs)
    wanted = distributions(space)
    for prior in priors:
        study.add_trial(optuna.trial.create_trial(
            state=prior.state, value=prior.value, params=prior.params,
            distributions={name: wanted[name] for name in prior.params},
            intermediate_values=prior.intermediate_values or None,
            user_attrs={**prior.race, WARM_START_FROM: prior.search, WARM_START_NUMBER: prior.number},
        ))
    for rank, params in enumerate(best_configs(priors, space.mode, top), start=1):
        study.enqueue_trial(params, user_attrs={WARM_START_RANK: rank})
    return len(priors)


def best_configs(priors: list[PriorTrial], mode: str, k: int) -> list[dict[str, Any]]:
    """The ``k`` best distinct configs among the finished prior trials, best first."""
    finished = [prior for prior in priors if prior.state == TrialState.COMPLETE and prior.value is not None]
    finished.sort(key=lambda prior: prior.value, reverse=mode == "max")
    picked: list[dict[str, Any]] = []
    for prior in finished:
        if prior.params not in picked:
            picked.append(prior.params)
        if len(picked) == k:
            break
    return picked


def own_trials(trials: Iterable[FrozenTrial]) -> list[FrozenTrial]:
    """The trials this search ran: its study without the prior trials of a warm start."""
    return [trial for trial in trials if WARM_START_FROM not in trial.user_attrs]


def source_tag(priors: list[PriorTrial]) -> dict[str, str]:
    """The parent run's record of where the search was warm-started from."""
    return _source_tag([prior.search for prior in priors])


def study_source_tag(study: optuna.Study) -> dict[str, str]:
    """``source_tag`` read back from a study's prior trials (what ``sync`` rebuilds a parent run from)."""
    return _source_tag([trial.user_attrs[WARM_START_FROM] for trial in study.trials if WARM_START_FROM in trial.user_attrs])


def _source_tag(searches: list[str]) -> dict[str, str]:
    if not searches:
        return {}
    return {"metaxl.warm_start": ",".join(dict.fromkeys(searches)), "metaxl.warm_start_trials": str(len(searches))}
