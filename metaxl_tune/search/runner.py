"""`metaxl-tune search`: Optuna (TPE by default, --sampler) proposes, Ray Tune runs one trial per GPU, MLflow records.

Everything that can be wrong with the request (space, config, tracking address, Ray address,
data) is checked before Ray starts. The search's options are saved next to Tune's experiment
state, so ``--resume`` needs only the name.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import optuna

import metaxl_tune
from metaxl_tune.config import ConfigError, RunConfig, build_config, refuse_ignored_options, refuse_task_ignored_options
from metaxl_tune.names import check_name
from metaxl_tune.origins import address_named, flag_for_field, tracking_uri_named
from metaxl_tune.paths import default_storage
from metaxl_tune.results import SEARCHED_TAG
from metaxl_tune.search.hooks import NO_HOOKS, SearchHooks
from metaxl_tune.search.space import SearchSpace, load_space
from metaxl_tune.search.strategy import (
    SCHEDULERS, StrategyError, build_sampler, build_scheduler, build_searcher, check_sampler,
)
from metaxl_tune.search.warm_start import own_trials
from metaxl_tune.tracking import Tracker, check_tracking_uri, default_tracking_uri

OPTIONS_FILE = "metaxl-search.json"
DEFAULT_STORAGE_RETRY_S = 180.0
"""--storage-retry-s default; the same as persistence.DEFAULT_RETRY_S (that module loads Ray)."""
OPTUNA_JOURNAL = "optuna.journal"

PRESETS: dict[str, dict[str, Any]] = {
    # Tiny random-init model on synthetic data: runs offline in minutes on 2 CPU cores.
    "demo": {"space": "demo", "base": {"model": "tiny", "data": "synthetic"}},
}


class SearchError(ValueError):
    """The search cannot start as asked; the message says what to change."""


@dataclass
class SearchOptions:
    """Everything a search was started with (saved as JSON so --resume can rebuild it)."""

    name: str
    space: str = "ner"
    base: dict[str, Any] = field(default_factory=dict)
    """RunConfig fields given on the command line; they override the space's fixed values."""
    preset: str | None = None
    num_samples: int = 10
    max_concurrent: int | None = None
    time_budget_s: float | None = None
    scheduler: Literal["asha", "fifo"] = "asha"
    sampler: str = "tpe"
    """Optuna sampler: tpe, random, gp, cmaes, qmc or grid (metaxl_tune/search/strategy.py)."""
    warm_start: list[str] = field(default_factory=list)
    """Earlier searches (same storage) whose finished and pruned trials seed the study (warm_start.py)."""
    warm_start_top: int = 0
    """The K best configs of the warm-start searches, run as the first trials."""
    grace_period: int = 1
    gpus_per_trial: float | None = None
    """None: 1 where the cluster has GPUs, else CPU trials."""
    cpus_per_trial: float = 1.0
    address: str | None = None
    storage: str = field(default_factory=default_storage)
    """Tune storage; default metaxl-runs/metaxl-searches (see metaxl_tune.paths)."""
    tracking_uri: str | None = None
    seed: int = 0
    cache_dir: str | None = None
    keep_checkpoints: int = 1
    max_failures: int = 2
    storage_retry_s: float = DEFAULT_STORAGE_RETRY_S
    """How long a trial waits for unwritable storage before its checkpoint write counts as a failure."""
    wait_for_resources_s: float = 0.0
    """When no node can hold one trial: seconds to wait for one (an autoscaling cluster adding
    nodes) before refusing; 0 refuses at once (resource_fit.py)."""

    @property
    def experiment_dir(self) -> Path:
        return Path(self.storage) / self.name

    def save(self) -> None:
        self.experiment_dir.mkdir(parents=True, exist_ok=True)
        (self.experiment_dir / OPTIONS_FILE).write_text(json.dumps(dataclasses.asdict(self), indent=2))

    @classmethod
    def load(cls, storage: str, name: str) -> "SearchOptions":
        path = Path(storage) / check_name(name) / OPTIONS_FILE
        if not path.is_file():
            raise SearchError(f"no search named {name} in {storage} (no {path}); check --name and --storage")
        raw = read_options_file(path)
        try:
            return cls(**raw)
        except TypeError:
            unknown = sorted(set(raw) - {f.name for f in dataclasses.fields(cls)})
            raise SearchError(
                f"{path}: not the saved options of a {'search' if cls is SearchOptions else 'study'}"
                f"{' (unknown keys: ' + ', '.join(unknown) + ')' if unknown else ''}; check --name and --storage"
            ) from None


def read_options_file(path: Path) -> dict[str, Any]:
    """A saved search's or ablation's options, or one line naming the damaged file."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as error:
        raise SearchError(f"{path}: cannot read the saved options ({str(error).splitlines()[0]}); "
                          "restore the file or start a new search under another --name") from None
    if not isinstance(raw, dict):
        raise SearchError(f"{path}: the saved options are not a JSON object; restore the file or start a new search")
    return raw


def apply_preset(options: SearchOptions) -> SearchOptions:
    if options.preset is None:
        return options
    if options.preset not in PRESETS:
        raise SearchError(f"--preset {options.preset}: unknown preset; known: {', '.join(PRESETS)}")
    preset = PRESETS[options.preset]
    space = options.space if options.space != SearchOptions.space else preset["space"]
    return dataclasses.replace(options, space=space, base={**preset["base"], **options.base})


@dataclass
class PreparedSearch:
    options: SearchOptions
    space: SearchSpace
    base: RunConfig
    tracking_uri: str
    address: str
    priors: list = field(default_factory=list)
    """The warm start's prior trials (warm_start.PriorTrial); empty once the study holds them."""


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
    try:
        base = build_config(options.base, origin="options")
    except ConfigError as error:
        raise ConfigError(flag_for_field(str(error), options.base)) from None
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
    from metaxl_tune.search.cluster import check_address, resolve_address

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
    if options.num_samples < 1:
        raise SearchError(f"--num-samples must be >= 1 (got {options.num_samples})")
    if options.scheduler not in SCHEDULERS:
        raise SearchError(f"--scheduler {options.scheduler}: use {' or '.join(SCHEDULERS)}")
    check_storage_retry(options)

    space, base = resolve_space(options)
    priors = check_strategy(options, space, resume=resume)
    from metaxl_tune.model.fit import check_fit, check_value_bounds  # torch and transformers: only once the cheap checks pass

    # The trials' common config against the model (RTN depth, max_length), before Ray starts.
    common = space.to_run_config(base, {})
    check_fit(common)
    check_value_bounds(common)

    # The address first: the default tracking store is created on resolving it.
    address = resolve_address(options.address)
    check_address(address, named=address_named(options.address))
    tracking_uri = options.tracking_uri or default_tracking_uri(create=True)
    check_tracking_uri(tracking_uri, named=tracking_uri_named(options.tracking_uri))
    return PreparedSearch(options, space, base, tracking_uri, address, priors)


def check_strategy(options: SearchOptions, space: SearchSpace, *, resume: bool) -> list:
    """The sampler against the space, and the warm start's prior trials (read and checked
    unless the study already holds them); one line on the first problem."""
    from metaxl_tune.search.warm_start import has_prior_trials, load_prior_trials

    try:
        check_sampler(options.sampler, space, None if resume else options.num_samples)
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


def check_storage_retry(options: SearchOptions) -> None:
    if not math.isfinite(options.storage_retry_s):
        raise SearchError(f"--storage-retry-s must be a finite number of seconds (got {options.storage_retry_s})")
    if not options.storage_retry_s >= 0:
        raise SearchError(f"--storage-retry-s must be >= 0 seconds (got {options.storage_retry_s})")


def optuna_storage(experiment_dir: Path) -> optuna.storages.BaseStorage:
    """The study's storage: an append-only journal file next to Tune's state. Only the driver
    writes it, and a journal costs a fraction of sqlite per ask/tell (bench/scale.py)."""
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(str(experiment_dir / OPTUNA_JOURNAL)))


def load_search_study(options: SearchOptions) -> optuna.Study:
    return optuna.load_study(study_name=options.name, storage=optuna_storage(options.experiment_dir))


def search_parent_tags(space: SearchSpace, base: RunConfig, options: SearchOptions) -> dict[str, str]:
    return {
        "metaxl.kind": "search",
        "metaxl.task": base.task,
        "metaxl.target": base.target,
        "metaxl.space": space.origin,
        "metaxl.preset": options.preset or "",
        "metaxl.version": metaxl_tune.__version__,
        "metaxl.git_commit": _git_commit() or "unknown",
        SEARCHED_TAG: ",".join(space.names),
        "metaxl.sampler": options.sampler,
        "metaxl.search_seed": str(options.seed),
        "metaxl.scheduler": options.scheduler,
    }


def sync_hint(options: SearchOptions) -> str:
    return f"metaxl-tune sync --name {options.name} --storage {options.storage}"


def tune_environment(*, verbose: bool = False) -> None:
    """Environment the Tune driver needs, set before Ray loads."""
    if not verbose:
        # Tune's new output engine prints its experiment box and a TensorBoard hint at any
        # verbosity; the legacy engine at verbose=0 prints nothing, leaving our progress lines.
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        # Ray's hint that token auth is on (the default we rely on, see README "Security defaults").
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    # Faults are said once, by our own lines; Ray's, MLflow's and Optuna's versions only with --verbose.
    from metaxl_tune.search.quiet_output import quiet_foreign_output

    quiet_foreign_output(verbose=verbose)
    # Resume checkpoints (every epoch with --checkpoint-every 1) make Tune warn about frequent
    # experiment snapshots of tiny trials; the snapshots are wanted.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # A trial that diverged or ran out of memory ends with a result that carries its stop
    # reason and no score; Tune's strict check would turn that into an error and a retry.
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")


def close_tracking(tracker: Tracker, options: SearchOptions, finish: Callable[[], None], log: Callable[[str], None]) -> bool:
    """The tracking steps after Tune is done; an unreachable store loses nothing (sync redoes them)."""
    try:
        finish()
    except Exception as error:  # noqa: BLE001 - MLflow raises many unrelated types
        log(f"warning: could not finish tracking at {tracker.tracking_uri} ({str(error).splitlines()[0][:200]}); "
            f"results are kept in {options.experiment_dir}: run `{sync_hint(options)}` once it is back")
        return False
    return True


def warm_data_cache(prepared: PreparedSearch, log: Callable[[str], None]) -> None:
    """Tokenize once per search (per node): every source language the space can pick."""
    from metaxl_tune.data.prepare import prepare_data
    from metaxl_tune.trainer import default_cache_dir

    cache_dir = Path(prepared.options.cache_dir or default_cache_dir())
    parameter = {p.name: p for p in prepared.space.parameters}.get("source")
    sources = parameter.values if parameter is not None and parameter.values else [None]
    for source in sources:
        config = prepared.space.to_run_config(prepared.base, {} if source is None else {"source": source})
        prepare_data(config, cache_dir)


def _git_commit() -> str | None:
    try:
        root = Path(metaxl_tune.__file__).resolve().parent.parent
        output = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        )
        return output.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


@dataclass
class SearchOutcome:
    name: str
    experiment_dir: Path
    tracking_uri: str
    parent_run_id: str
    counts: dict[str, int]
    best: dict[str, Any] | None
    finished: bool
    interrupted: str | None = None
    """The signal that stopped the search (SIGINT, SIGTERM), None when it ran to its end."""
    failures: Any = None
    """ending.Failures of every trial of the search."""


def run_search(
    options: SearchOptions, *, resume: bool = False, log: Callable[[str], None] = print, verbose: bool = False,
    hooks: SearchHooks = NO_HOOKS,
) -> SearchOutcome:
    """The search as ``options`` say; ``hooks`` (metaxl_tune/search/hooks.py) substitute the trial
    body and add Tune callbacks, for benchmarks. One driver per search (driver_lock.py): its lock
    is taken before the check for an existing search and before anything of the search is made."""
    from metaxl_tune.search.driver_lock import driver_lock

    # The name is checked before the lock: the lock file is named after it.
    check_name(options.name)
    with driver_lock(options.storage, options.name, command="search", log=log):
        return _run_locked_search(options, resume=resume, log=log, verbose=verbose, hooks=hooks)


def _run_locked_search(
    options: SearchOptions, *, resume: bool, log: Callable[[str], None], verbose: bool, hooks: SearchHooks,
) -> SearchOutcome:
    prepared = prepare(options, resume=resume)
    options = prepared.options
    log(f"search {options.name}: space {prepared.space.origin}, {options.num_samples} trials, "
        f"tracking {prepared.tracking_uri}, storage {options.experiment_dir}")
    tune_environment(verbose=verbose)
    # Ray and the search machinery load only now that every offline check has passed; the
    # cluster checks come before any data work.
    import ray
    from ray import tune

    from metaxl_tune.search.callbacks import MlflowTrialCallback, ProgressCallback
    from metaxl_tune.search.cluster import check_shared_storage, connect, describe
    from metaxl_tune.search.ending import close_leftover_optuna_trials, tune_failures
    from metaxl_tune.search.interrupt import Interruption
    from metaxl_tune.search.persistence import StorageWatch
    from metaxl_tune.search.resource_fit import TrialRequest, check_trial_fits
    from metaxl_tune.search.trial_configs import TrialConfigs
    from metaxl_tune.search.warm_start import seed_study, source_tag

    connect(prepared.address)
    # After ray.init, which installs a SIGTERM handler of its own (sys.exit).
    interruption = Interruption(say=log).install()
    try:
        log(describe(prepared.address))
        check_trial_fits(TrialRequest(options.cpus_per_trial, resolve_gpus(options)),
                         wait_s=options.wait_for_resources_s, log=log)
        check_shared_storage(options.storage)
        warm_data_cache(prepared, log)
        options.save()

        space, base = prepared.space, prepared.base
        tracker = Tracker(prepared.tracking_uri, options.name, verbose=verbose)
        parent_id = tracker.parent_run({**search_parent_tags(space, base, options), **source_tag(prepared.priors)})
        tracker.mark_experiment()
        gpus = resolve_gpus(options)
        configs = TrialConfigs(base, space)
        trainable = build_trainable(options, configs, gpus, hooks.trial_function(None))
        callbacks = hooks.with_callbacks([
            MlflowTrialCallback(tracker, parent_id, configs, sync_hint=sync_hint(options)),
            ProgressCallback(space.metric, space.mode, options.num_samples, space.names),
            StorageWatch(options.storage_retry_s),
        ])
        if resume and tune.Tuner.can_restore(str(options.experiment_dir)):
            # The restored run config brings back its (picklable) callbacks; the tracker finds
            # the parent and trial runs again by their tags, so nothing is logged twice.
            tuner = tune.Tuner.restore(
                str(options.experiment_dir), trainable, resume_unfinished=True, resume_errored=True
            )
        else:
            if prepared.priors:
                # Into the journal before the searcher loads the study (create_study(load_if_exists)).
                seed_study(optuna.create_study(storage=optuna_storage(options.experiment_dir), study_name=options.name,
                                               direction="maximize" if space.mode == "max" else "minimize",
                                               load_if_exists=True),
                           prepared.priors, space, top=options.warm_start_top)
            searcher = build_searcher(space, build_sampler(options.sampler, options.seed, space),
                                      study_name=options.name, storage=optuna_storage(options.experiment_dir))
            scheduler = build_scheduler(options.scheduler, space=space, base=base, grace_period=options.grace_period)
            tuner = tune.Tuner(
                trainable,
                tune_config=tune.TuneConfig(
                    search_alg=searcher,
                    scheduler=scheduler,
                    num_samples=options.num_samples,
                    max_concurrent_trials=concurrency(options, gpus),
                    time_budget_s=options.time_budget_s,
                    trial_dirname_creator=lambda trial: f"trial_{trial.trial_id}",
                    # A new worker per trial would re-import torch and transformers (seconds each).
                    reuse_actors=True,
                ),
                run_config=build_run_config(options, callbacks, space.metric, space.mode),
            )
        started = time.monotonic()
        results = tuner.fit()
    finally:
        ray.shutdown()
        interruption.restore()
    study = load_search_study(options)
    # Nothing stays RUNNING once the driver exits, interrupted or not (ending.py): on --resume the
    # restored searcher opens a new Optuna trial for each resumed trial (pruning.py).
    close_leftover_optuna_trials(study)
    counts = study_counts(study)
    out_of_time = options.time_budget_s is not None and time.monotonic() - started >= options.time_budget_s
    finished = not interruption.interrupted and (out_of_time or sum(counts.values()) >= options.num_samples)

    best = None
    completed = [t for t in own_trials(study.trials) if t.state == optuna.trial.TrialState.COMPLETE]
    if completed:
        pick = max if space.mode == "max" else min
        best_trial = pick(completed, key=lambda t: t.value)
        best = {"value": best_trial.value, "params": best_trial.params}

    def finish_tracking() -> None:
        # Runs left RUNNING are marked interrupted: a resume reopens them, and once the search
        # is over the ones left are trials the restored search never ran.
        tracker.close_interrupted()
        if finished:
            attach_plots(tracker, parent_id, study, options.experiment_dir / "plots")
        tracker.log_search_summary(parent_id, metric=space.metric, best=best and best["value"], counts=counts,
                                   space=space.origin)
        tracker.end_run(parent_id, "FINISHED" if finished else "KILLED")

    close_tracking(tracker, options, finish_tracking, log)
    return SearchOutcome(options.name, options.experiment_dir, prepared.tracking_uri, parent_id, counts, best, finished,
                         interruption.signal_name, tune_failures(results))


def study_counts(study: optuna.Study) -> dict[str, int]:
    """Ended trials by outcome, as Optuna recorded them; ``failed`` leaves out the trials closed
    unrun at the end of a resumed search (stop reason ``interrupted``)."""
    from metaxl_tune.tracking import INTERRUPTED

    states = {"completed": optuna.trial.TrialState.COMPLETE, "pruned": optuna.trial.TrialState.PRUNED,
              "failed": optuna.trial.TrialState.FAIL}
    # A warm start's prior trials are the earlier searches' (warm_start.py), not this one's.
    trials = [t for t in own_trials(study.trials) if t.user_attrs.get("stop_reason") != INTERRUPTED]
    return {name: sum(1 for t in trials if t.state == state) for name, state in states.items()}


def build_trainable(options: SearchOptions, configs: Callable[[dict], RunConfig], gpus: float,
                    trial: Callable[..., None] | None = None):
    """The trial function (train_trial unless a hook gives another) with its (small) arguments
    and per-trial resources."""
    from ray import tune

    from metaxl_tune.trainer import default_cache_dir

    if trial is None:
        from metaxl_tune.search.trainable import train_trial as trial
    return tune.with_resources(
        tune.with_parameters(
            trial,
            configs=configs,
            cache_dir=str(Path(options.cache_dir or default_cache_dir()).resolve()),
            cpus=options.cpus_per_trial,
            gpus=gpus,
            storage_retry_s=options.storage_retry_s,
        ),
        {"cpu": options.cpus_per_trial, "gpu": gpus},
    )


def build_run_config(options: SearchOptions, callbacks: list, metric: str, mode: str):
    """Tune's run config: storage, kept checkpoints (the newest K), retries, callbacks."""
    from ray import tune

    return tune.RunConfig(
        name=options.name,
        storage_path=options.storage,
        # The newest resume checkpoints: each carries the best-dev weights so far, so ranking
        # them by the metric is not needed (and kept the wrong epoch's weights on ties).
        checkpoint_config=tune.CheckpointConfig(num_to_keep=options.keep_checkpoints),
        failure_config=tune.FailureConfig(max_failures=options.max_failures),
        callbacks=callbacks,
        verbose=0,  # with --verbose, Tune's new output engine still prints its box and hints
    )


def resolve_gpus(options: SearchOptions) -> float:
    from metaxl_tune.search.cluster import cluster_gpus

    return options.gpus_per_trial if options.gpus_per_trial is not None else (1.0 if cluster_gpus() > 0 else 0.0)


def concurrency(options: SearchOptions, gpus: float) -> int:
    """Trials at once: --max-concurrent, else every slot of the cluster. Without a limit, Tune
    keeps a single trial pending for a custom searcher, which runs a search one trial at a time."""
    if options.max_concurrent is not None:
        return options.max_concurrent
    from metaxl_tune.search.cluster import cluster_slots

    return cluster_slots(cpus_per_trial=options.cpus_per_trial, gpus_per_trial=gpus)


def attach_plots(tracker: Tracker, parent_id: str, study: optuna.Study, directory: Path) -> None:
    """Optuna's optimization history, parameter importances and parallel coordinates as PNGs."""
    import matplotlib

    matplotlib.use("Agg")
    import warnings

    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as optuna_plots

    directory.mkdir(parents=True, exist_ok=True)
    plots = {
        "optimization_history": optuna_plots.plot_optimization_history,
        "param_importances": optuna_plots.plot_param_importances,
        "parallel_coordinate": optuna_plots.plot_parallel_coordinate,
    }
    written = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
        for name, plot in plots.items():
            try:
                axes = plot(study)
            except (ValueError, RuntimeError, ZeroDivisionError):
                continue  # e.g. importances need two finished trials with varying parameters
            figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
            path = directory / f"{name}.png"
            figure.savefig(path, dpi=110, bbox_inches="tight")
            plt.close(figure)
            written.append(path)
    if written:
        tracker.log_files(parent_id, written, "plots")
