"""`metaxl-tune search`: Optuna (TPE by default, --sampler) proposes, Ray Tune runs one trial per GPU, MLflow records.

Everything that can be wrong with the request (space, config, tracking address, Ray address,
data) is checked before Ray starts. The search's options are saved next to Tune's experiment
state, so ``--resume`` needs only the name.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import optuna

import metaxl_tune
from metaxl_tune.config import RunConfig
from metaxl_tune.common.names import check_name
from metaxl_tune.common.secrets import mask_text, mask_uri
from metaxl_tune.common.supervision import tell_closed, tell_opened
from metaxl_tune.results.config_artifact import upload_config_table
from metaxl_tune.results.ranking import SEARCHED_TAG
from metaxl_tune.search.driver.hooks import NO_HOOKS, SearchHooks
from metaxl_tune.search.driver.moved_modules import old_module_paths, unknown_modules_refused
from metaxl_tune.search.faults.interrupt import resume_hint, stopped_line
from metaxl_tune.search.driver.options import OPTIONS_FILE, SearchOptions, load_search_study, optuna_storage, sync_hint
from metaxl_tune.search.driver.preflight import prepare, warm_data_cache
from metaxl_tune.search.space.racing import seed_cap
from metaxl_tune.search.space.schema import SearchSpace
from metaxl_tune.search.space.strategy import (
    build_sampler, build_scheduler, build_searcher,
)
from metaxl_tune.search.driver.warm_start import own_trials
from metaxl_tune.search.records.artifacts import DRIVER_SAID, ArtifactUploads
from metaxl_tune.search.records.plots import upload_plots
from metaxl_tune.search.records.tracking_queue import say_tracking
from metaxl_tune.results.tracking import Tracker



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
        "metaxl.repeats": str(options.repeats),
        "metaxl.max_repeats": str(options.max_repeats),
    }


def tune_environment(*, verbose: bool = False) -> None:
    """Environment the Tune driver needs, set before Ray loads."""
    if not verbose:
        # Tune's new output engine prints its experiment box and a TensorBoard hint at any
        # verbosity; the legacy engine at verbose=0 prints nothing, leaving our progress lines.
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        # Ray's hint that token auth is on (the default we rely on, see README "Security defaults").
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    # Faults are said once, by our own lines; Ray's, MLflow's and Optuna's versions only with --verbose.
    from metaxl_tune.search.faults.quiet_output import quiet_foreign_output

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
        reason = mask_text(str(error).splitlines()[0][:200] if str(error) else type(error).__name__)
        log(f"warning: could not finish tracking at {tracker.shown_uri} ({reason}); "
            f"results are kept in {options.experiment_dir}: run `{sync_hint(options)}` once it is back")
        return False
    return True


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
    """Masked (common/secrets.py): what the command prints."""
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
    """The search as ``options`` say; ``hooks`` (metaxl_tune/search/driver/hooks.py) substitute the trial
    body and add Tune callbacks, for benchmarks. One driver per search (driver_lock.py): its lock
    is taken before the check for an existing search and before anything of the search is made."""
    from metaxl_tune.search.driver.lock import driver_lock

    # The name is checked before the lock: the lock file is named after it.
    check_name(options.name)
    with driver_lock(options.storage, options.name, command="search", log=log) as lock:
        return _run_locked_search(options, resume=resume, log=log, verbose=verbose, hooks=hooks, lock=lock)


def _run_locked_search(
    options: SearchOptions, *, resume: bool, log: Callable[[str], None], verbose: bool, hooks: SearchHooks, lock: Any,
) -> SearchOutcome:
    prepared = prepare(options, resume=resume)
    options = prepared.options
    log(f"search {options.name}: space {prepared.space.origin}, {options.num_samples} trials, "
        f"tracking {mask_uri(prepared.tracking_uri)}, storage {options.experiment_dir}")
    tune_environment(verbose=verbose)
    # Ray and the search machinery load only now that every offline check has passed; the
    # cluster checks come before any data work.
    from ray import tune

    from metaxl_tune.search.records.callbacks import MlflowTrialCallback, ProgressCallback
    from metaxl_tune.search.execution.cluster import (
        check_shared_storage, connect, describe, native_log_path, ray_loss_check,
    )
    from metaxl_tune.search.faults.ending import tune_failures
    from metaxl_tune.search.faults.interrupt import Interruption
    from metaxl_tune.search.faults.persistence import StorageWatch
    from metaxl_tune.search.faults.quiet_output import NativeLines
    from metaxl_tune.search.faults.ray_loss import RayLossWatch
    from metaxl_tune.search.execution.resource_fit import TrialRequest, check_trial_fits
    from metaxl_tune.search.space.racing import Race
    from metaxl_tune.search.space.racing_search import race_tags
    from metaxl_tune.search.space.trial_configs import TrialConfigs
    from metaxl_tune.search.driver.warm_start import seed_study, source_tag

    connect(prepared.address)
    # After ray.init, which installs a SIGTERM handler of its own (sys.exit).
    interruption = Interruption(say=log).install()
    native, watch = None, None
    records: dict[str, Any] = {}  # the tracker and the parent run, once made: what a stop without Ray closes
    started = time.monotonic()

    def end_without_ray(signal_name: str, lost: str) -> None:
        # What the rest of this function does after Tune's loop, from the records alone (ray_loss.py).
        try:
            if not (options.experiment_dir / OPTIONS_FILE).is_file():
                log(stopped_line("search", options.name, options.storage, OPTIONS_FILE, tracking_uri=options.tracking_uri))
                return
            close_search(options, prepared.space, records.get("tracker"), records.get("parent_id"),
                         interrupted=True, started=started, log=log)
            tell_closed()
            log(f"search {options.name} interrupted ({signal_name}; {lost} is gone too); its state is saved up to "
                f"Tune's last snapshot. Resume with: {resume_hint('search', options.name, str(options.experiment_dir.parent), tracking_uri=options.tracking_uri)}")
        finally:
            lock.release()

    try:
        native = None if verbose else NativeLines(native_log_path())
        watch = RayLossWatch(ray_loss_check(prepared.address), end_without_ray, say=log).start()
        log(describe(prepared.address))
        check_trial_fits(TrialRequest(options.cpus_per_trial, resolve_gpus(options)),
                         wait_s=options.wait_for_resources_s, log=log)
        check_shared_storage(options.storage)
        warm_data_cache(prepared, log)
        options.save()

        space, base = prepared.space, prepared.base
        tracker = Tracker(prepared.tracking_uri, options.name, verbose=verbose)
        parent_id = tracker.parent_run({**search_parent_tags(space, base, options), **source_tag(prepared.priors)})
        records.update(tracker=tracker, parent_id=parent_id)
        # From here a supervisor closes what a driver ended by Ray leaves open (supervision.py).
        tell_opened({"command": "search", "storage": str(options.storage), "name": options.name, "tracking_uri": options.tracking_uri,
                     "resolved_tracking_uri": prepared.tracking_uri})
        tracker.mark_experiment()
        gpus = resolve_gpus(options)
        configs = TrialConfigs(base, space)
        trainable = build_trainable(options, configs, gpus, hooks.trial_function(None))
        callbacks = hooks.with_callbacks([
            MlflowTrialCallback(tracker, parent_id, configs, race_tags, sync_hint=sync_hint(options),
                                kept_in=str(options.experiment_dir)),
            ProgressCallback(space.metric, space.mode, options.num_samples, space.names,
                             seed_cap=seed_cap(options.repeats, options.max_repeats)),
            StorageWatch(options.storage_retry_s),
        ])
        restoring = resume and tune.Tuner.can_restore(str(options.experiment_dir))
        if restoring:
            # The restored run config brings back its (picklable) callbacks; the tracker finds
            # the parent and trial runs again by their tags, so nothing is logged twice. State
            # pickled before the modules moved names their old paths (moved_modules.py).
            with old_module_paths(), unknown_modules_refused(options.experiment_dir):
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
            # Every search races (--repeats 1 included): each trial has its config id, repeat and
            # paired seed (racing.py), and the race's state rides in Tune's snapshots.
            searcher = build_searcher(space, build_sampler(options.sampler, options.seed, space),
                                      study_name=options.name, storage=optuna_storage(options.experiment_dir),
                                      race=Race(options.repeats, options.max_repeats, space.mode),
                                      search_seed=options.seed)
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
        # Tune loads the searcher's and the trials' pickled state as fit starts.
        with old_module_paths() if restoring else nullcontext():
            results = tuner.fit()
    finally:
        stop_ray(watch, native, interruption)
    counts, best, finished = close_search(options, space, tracker, parent_id, interrupted=interruption.interrupted,
                                          started=started, log=log)
    tell_closed()
    return SearchOutcome(options.name, options.experiment_dir, mask_uri(prepared.tracking_uri), parent_id, counts, best, finished,
                         interruption.signal_name, tune_failures(results))


def stop_ray(watch: Any, native: Any, interruption: Any) -> None:
    """Shut Ray down (the watch steps in if Ray's own processes are gone and it waits for them),
    then stop watching and give stderr and the signal handlers back."""
    import ray

    try:
        if watch is not None:
            watch.shutting_down()
        ray.shutdown()
    finally:
        if watch is not None:
            watch.stop()
        if native is not None:
            native.restore()
        interruption.restore()


def close_search(
    options: SearchOptions, space: SearchSpace, tracker: Tracker | None, parent_id: str | None, *, interrupted: bool,
    started: float, log: Callable[[str], None],
) -> tuple[dict[str, int], dict[str, Any] | None, bool]:
    """What ends a search once Tune is done with it (or, after a stop that took Ray's own
    processes with it, once Ray is gone): (counts, best, finished)."""
    from metaxl_tune.search.faults.ending import close_leftover_optuna_trials

    study = load_search_study(options)
    # Nothing stays RUNNING once the driver exits, interrupted or not (ending.py): on --resume the
    # restored searcher opens a new Optuna trial for each resumed trial (pruning.py).
    close_leftover_optuna_trials(study)
    counts = study_counts(study)
    out_of_time = options.time_budget_s is not None and time.monotonic() - started >= options.time_budget_s
    finished = not interrupted and (out_of_time or sum(counts.values()) >= options.num_samples)
    best = study_best(study, space.mode, cap=seed_cap(options.repeats, options.max_repeats))

    def finish_tracking() -> None:
        # Runs left RUNNING are marked interrupted: a resume reopens them, and once the search
        # is over the ones left are trials the restored search never ran.
        tracker.close_interrupted()
        tracker.log_search_summary(parent_id, metric=space.metric, best=best and best["value"], counts=counts,
                                   space=space.origin)
        tracker.end_run(parent_id, "FINISHED" if finished else "KILLED")
        # Last, and never in the way of the record: a store that does not take the files
        # leaves the search's summary and status as they are (artifacts.py).
        uploads = ArtifactUploads(tracker, kept_in=options.experiment_dir, sync_hint=sync_hint(options),
                                  say=say_tracking, said=DRIVER_SAID)
        # The configs ranked as `best` ranks them, also for a search stopped part way (a resume rewrites it).
        upload_config_table(tracker, parent_id, space.metric, uploads.upload)
        if finished:
            upload_plots(tracker, parent_id, study, options.experiment_dir / "plots", uploads)

    if tracker is not None and parent_id is not None:
        close_tracking(tracker, options, finish_tracking, log)
    return counts, best, finished


def study_best(study: optuna.Study, mode: str, cap: int | None = None) -> dict[str, Any] | None:
    """The search's incumbent as Optuna recorded it: the config with the best mean among those
    with the most completed seeds (racing.incumbent_of, seeds counted up to ``cap``: see
    racing.seed_cap), never the best single trial. Returns
    its mean (``value``), params, ``seeds`` and ``config_id``; None before a trial completed.
    A search from before seeds were part of a trial (no config ids) gives its best trial."""
    from metaxl_tune.search.space.racing import CONFIG_ID_KEY, REPEAT_KEY, incumbent_of, summarize

    ended = [t for t in own_trials(study.trials)
             if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]
    completed = [t for t in ended if t.state == optuna.trial.TrialState.COMPLETE]
    if not completed:
        return None
    if not all(CONFIG_ID_KEY in t.user_attrs for t in completed):
        best_trial = (max if mode == "max" else min)(completed, key=lambda t: t.value)
        return {"value": best_trial.value, "params": best_trial.params, "seeds": 1, "config_id": None}
    runs, seen, params = [], set(), {}
    for trial in ended:
        key = (trial.user_attrs.get(CONFIG_ID_KEY), trial.user_attrs.get(REPEAT_KEY))
        if key[0] is None or key in seen:
            continue  # a repeat is counted once (Optuna keeps the first end of a re-run trial)
        seen.add(key)
        params.setdefault(key[0], trial.params)
        runs.append((key[0], trial.value if trial.state == optuna.trial.TrialState.COMPLETE else None))
    summary = summarize(runs)
    identity = incumbent_of(summary, mode, cap=cap)
    mean, seeds = summary[identity]
    return {"value": mean, "params": params[identity], "seeds": seeds, "config_id": identity}


def study_counts(study: optuna.Study) -> dict[str, int]:
    """Ended trials by outcome, as Optuna recorded them; ``failed`` leaves out the trials closed
    unrun at the end of a resumed search (stop reason ``interrupted``)."""
    from metaxl_tune.results.tracking import INTERRUPTED

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

    from metaxl_tune.common.paths import default_cache_dir

    if trial is None:
        from metaxl_tune.search.execution.trainable import train_trial as trial
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
    from metaxl_tune.search.execution.cluster import cluster_gpus

    return options.gpus_per_trial if options.gpus_per_trial is not None else (1.0 if cluster_gpus() > 0 else 0.0)


def concurrency(options: SearchOptions, gpus: float) -> int:
    """Trials at once: --max-concurrent, else every slot of the cluster. Without a limit, Tune
    keeps a single trial pending for a custom searcher, which runs a search one trial at a time."""
    if options.max_concurrent is not None:
        return options.max_concurrent
    from metaxl_tune.search.execution.cluster import cluster_slots

    return cluster_slots(cpus_per_trial=options.cpus_per_trial, gpus_per_trial=gpus)
