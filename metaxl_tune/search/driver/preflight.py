"""Everything a search checks before Ray starts: the space, the config, the strategy, the warm
start, the model's limits and the addresses. A problem is one line naming what to change.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from metaxl_tune.config import RunConfig, command_config, refuse_ignored_options, refuse_task_ignored_options
from metaxl_tune.common.names import check_name
from metaxl_tune.common.origins import TRACKING_URI_ENV, address_named, tracking_uri_named
from metaxl_tune.results.tracking import check_tracking_uri, default_tracking_uri, usable_saved_uri
from metaxl_tune.search.driver.options import (
    OPTIONS_FILE, OPTUNA_JOURNAL, SearchError, SearchOptions, apply_preset, check_driver_options, check_storage_retry,
    load_search_study,
)
from metaxl_tune.search.space.racing import REPEATS_AUTO
from metaxl_tune.search.space.schema import SearchSpace, load_space
from metaxl_tune.search.space.strategy import SCHEDULERS, StrategyError, check_sampler

if TYPE_CHECKING:  # torch and transformers load only once the cheap checks pass
    from metaxl_tune.model.fit import ModelFit


@dataclass
class PreparedSearch:
    options: SearchOptions
    space: SearchSpace
    base: RunConfig
    tracking_uri: str
    address: str
    priors: list = field(default_factory=list)
    """The warm start's prior trials (warm_start.PriorTrial); empty once the study holds them."""
    fit: "ModelFit | None" = None
    """check_fit of the trials' common config: the data warm-up encodes dev and test at its
    evaluation length. Each trial checks its own sampled config again, in its worker."""


def resolve_space(options: SearchOptions) -> tuple[SearchSpace, RunConfig]:
    """The search space with the command line's fields applied, and the base config."""
    space = load_space(options.space)
    clash = sorted(set(options.base) & set(space.names))
    if clash:
        raise SearchError(
            f"{space.origin}: {', '.join(clash)} is searched by the space; drop "
            f"{', '.join('--' + name.replace('_', '-') for name in clash)} or remove it from the space"
        )
    # Command-line fields beat the space's fixed values: the user typed them for this search.
    space = dataclasses.replace(space, fixed={k: v for k, v in space.fixed.items() if k not in options.base})
    base = command_config(options.base, given=options.base)
    if "method" not in space.names:
        # One method for every trial: a flag it ignores is a mistake (a searched method instead
        # notes the ignored fields in each trial's params, callbacks.MlflowTrialCallback).
        refuse_ignored_options(space.fixed.get("method", base.method), set(options.base) - {"method"})
    if "task" not in space.names:
        refuse_task_ignored_options(space.fixed.get("task", base.task), set(options.base) - {"task"})
    space.validate(base)
    return space, base


def prepare(options: SearchOptions, *, resume: bool) -> PreparedSearch:
    """All checks that need neither Ray nor a GPU; raises a one-line error on the first problem."""
    from metaxl_tune.search.execution.cluster import check_address, resolve_address

    options = apply_preset(options)
    check_name(options.name)
    if "://" in options.storage:
        raise SearchError(
            f"--storage {options.storage}: bucket URIs are not supported (the driver keeps the Optuna "
            "journal there); mount the bucket on every node (s3fs, gcsfuse) or use an NFS path"
        )
    storage = Path(options.storage).resolve()
    options = dataclasses.replace(options, storage=str(storage))
    exists = (options.experiment_dir / OPTIONS_FILE).is_file()
    if exists and not resume:
        raise SearchError(
            f"a search named {options.name} already exists in {storage}; "
            "pass --resume to continue it or choose another --name"
        )
    check_driver_options(options)
    if options.num_samples < 1:
        raise SearchError(f"--num-samples must be >= 1 (got {options.num_samples})")
    if options.scheduler not in SCHEDULERS:
        raise SearchError(f"--scheduler {options.scheduler}: use {' or '.join(SCHEDULERS)}")
    check_storage_retry(options)
    # A tracking store given (flag, saved options, $MLFLOW_TRACKING_URI) is checked first: its
    # checks are cheap and create nothing. The default store is made and checked last.
    given_uri = given_tracking_uri(options)
    if given_uri is not None:
        check_tracking_uri(given_uri, named=tracking_uri_named(options.tracking_uri))

    space, base = resolve_space(options)
    if not resume:
        refuse_fixed_seed(options, space)
    priors = check_strategy(options, space, resume=resume)
    from metaxl_tune.model.fit import check_fit, check_value_bounds  # torch and transformers: only once the cheap checks pass

    # The trials' common config against the model (RTN depth, max_length), before Ray starts.
    common = space.to_run_config(base, {})
    fit = check_fit(common)
    check_value_bounds(common, fit)
    check_space_fits_model(space, base)

    # The address first: the default tracking store is created on resolving it.
    address = resolve_address(options.address)
    check_address(address, named=address_named(options.address))
    tracking_uri = given_uri or default_tracking_uri(create=True)
    if given_uri is None:
        check_tracking_uri(tracking_uri, named=tracking_uri_named(options.tracking_uri))
    return PreparedSearch(options, space, base, tracking_uri, address, priors, fit)


def refuse_fixed_seed(options: SearchOptions, space: SearchSpace) -> None:
    """A search gives every trial its training seed from --search-seed (racing.paired_seed): a
    seed set by flag or by the space would be overridden, so it is refused, not ignored."""
    why = "a search draws each trial's training seed from --search-seed (paired seeds)"
    if "seed" in options.base:
        raise SearchError(f"--seed {options.base['seed']}: {why}; drop --seed, or set --search-seed")
    if "seed" in space.names or "seed" in space.fixed:
        where = "parameters" if "seed" in space.names else "fixed"
        raise SearchError(f"{space.origin}: {where}.seed: {why}; remove seed from the space, "
                          "and use --repeats N for N seeds of every config")


def given_tracking_uri(options: SearchOptions) -> str | None:
    """The tracking URI of --tracking-uri, the saved options or $MLFLOW_TRACKING_URI; None for the
    default store. A URI read back on --resume has its credentials masked: they are given again."""
    if options.tracking_uri:
        return usable_saved_uri(options.tracking_uri, options.experiment_dir / OPTIONS_FILE)
    return os.environ.get(TRACKING_URI_ENV) or None


def check_strategy(options: SearchOptions, space: SearchSpace, *, resume: bool) -> list:
    """The sampler against the space, and the warm start's prior trials (read and checked
    unless the study already holds them); one line on the first problem."""
    from metaxl_tune.search.driver.warm_start import has_prior_trials, load_prior_trials

    try:
        per_config = options.max_repeats if options.repeats == REPEATS_AUTO else int(options.repeats)
        check_sampler(options.sampler, space, None if resume else options.num_samples, per_config)
    except StrategyError as error:
        raise SearchError(str(error)) from None
    if options.warm_start_top < 0:
        raise SearchError(f"--warm-start-top must be >= 0 (got {options.warm_start_top})")
    if options.warm_start_top and not options.warm_start:
        raise SearchError("--warm-start-top needs --warm-start NAME of the searches to take the best configs from")
    if not options.warm_start:
        return []
    journal = options.experiment_dir / OPTUNA_JOURNAL
    if resume and journal.is_file():
        try:
            if has_prior_trials(load_search_study(options)):
                return []
        except KeyError:
            pass  # the journal holds no study yet: the search never asked for a trial
    return load_prior_trials(options.warm_start, options.storage, space, new_name=options.name)


def warm_data_cache(prepared: PreparedSearch, log: Callable[[str], None]) -> None:
    """Tokenize once per search (per node): every source language the space can pick. Only the
    source differs from the common config, so its check_fit (``prepared.fit``) holds for each."""
    from metaxl_tune.train.prepare import prepare_data
    from metaxl_tune.common.paths import default_cache_dir

    cache_dir = Path(prepared.options.cache_dir or default_cache_dir())
    parameter = {p.name: p for p in prepared.space.parameters}.get("source")
    sources = parameter.values if parameter is not None and parameter.values else [None]
    eval_max_length = prepared.fit.eval_max_length if prepared.fit is not None else None
    for source in sources:
        config = prepared.space.to_run_config(prepared.base, {} if source is None else {"source": source})
        prepare_data(config, cache_dir, eval_max_length=eval_max_length)


def check_space_fits_model(space: SearchSpace, base: RunConfig) -> None:
    """Every categorical value and both bounds of every numeric range against the model's limits,
    as `train` checks its flags (RTN depth, max_length, eval_max_length, rtn_bottleneck): a value
    past them would otherwise fail in a trial after Ray started or, for a bottleneck, ask a
    trial's worker for more memory than any node has. The other integers that size memory
    (batch_size, source_size, target_size) have fixed bounds (config.INTEGER_BOUNDS), which
    ``SearchSpace.validate`` checks through the run config."""
    from metaxl_tune.model.fit import check_fit, rtn_bottleneck_limit

    for key, value, point in space.corner_points():
        config = space.to_run_config(base, point)
        try:
            fit = check_fit(config)
        except ValueError as error:  # ModelError, and the placement resolver's own ValueError
            raise SearchError(f"{space.origin}: {key}: {value} does not fit model {config.model} ({error})") from None
        # Whatever the point's method: a value the space lists is one that some trial may use.
        if key.startswith("parameters.rtn_bottleneck."):
            limit, why = rtn_bottleneck_limit(config, fit)
            if value > limit:
                raise SearchError(
                    f"{space.origin}: {key}: {value} does not fit model {config.model} "
                    f"(rtn_bottleneck: at most {limit} for it, {why}); lower it"
                )
