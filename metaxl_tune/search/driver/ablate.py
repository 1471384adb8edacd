"""`metaxl-tune ablate`: a study's grid (settings x targets x seeds) on the search's Ray
executor and MLflow store, one nested run per cell tagged with its setting."""

from __future__ import annotations

import dataclasses
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from metaxl_tune.common.supervision import tell_closed, tell_opened
from metaxl_tune.config import RunConfig, build_config, command_config, refuse_task_ignored_options
from metaxl_tune.common.names import check_name
from metaxl_tune.common.origins import address_named, tracking_uri_named
from metaxl_tune.search.driver.moved_modules import old_module_paths, unknown_modules_refused
from metaxl_tune.search.driver.options import (
    OPTIONS_FILE, SearchError, SearchOptions, check_driver_options, check_storage_retry, sync_hint,
)
from metaxl_tune.search.driver.preflight import given_tracking_uri
from metaxl_tune.search.driver.runner import (
    build_run_config, build_trainable, close_tracking, concurrency, resolve_gpus, stop_ray, tune_environment,
)
from metaxl_tune.search.faults.interrupt import resume_hint, stopped_line
from metaxl_tune.search.space.study import Cell, Study, estimated_seconds, grid, load_study
from metaxl_tune.common.secrets import mask_uri
from metaxl_tune.results.tracking import Tracker, check_tracking_uri, default_tracking_uri

SETTING_TAG = "metaxl.setting"
METRIC, MODE = "best_dev_f1", "max"

# Tiny random-init model on synthetic data, sized to run a small grid in minutes on 2 CPUs.
ABLATION_PRESETS: dict[str, dict[str, Any]] = {
    "demo": {"model": "tiny", "data": "synthetic", "epochs": 2, "lr": 3e-3, "meta_lr": 1e-3,
             "rtn_bottleneck": 16, "source_size": 300, "max_length": 64},
}


MAX_SEEDS = 1_000
"""--seeds of one ablation: seed = 1..N, and no table needs more."""
MAX_RUNS = 100_000
"""Settings x targets x seeds of one ablation: past it the grid is not a study anyone runs."""


@dataclass
class AblationOptions(SearchOptions):
    study: str = "methods"
    targets: list[str] = field(default_factory=list)
    seeds: int = 1


class CellConfigs:
    """A trial's config is its grid cell; this turns it into the RunConfig (picklable)."""

    def __init__(self, base: RunConfig):
        self.base = base.to_dict()

    def __call__(self, trial_config: dict[str, Any]) -> RunConfig:
        return build_config(self.base).replace(**trial_config["cell"]["values"])

    @staticmethod
    def tags(trial_config: dict[str, Any]) -> dict[str, str]:
        return {SETTING_TAG: trial_config["cell"]["setting"]}


@dataclass
class Plan:
    options: AblationOptions
    study: Study
    base: RunConfig
    cells: list[Cell]

    def configs(self) -> list[RunConfig]:
        return [self.base.replace(**cell.values) for cell in self.cells]

    def estimated_hours(self) -> dict[str, float]:
        hours: dict[str, float] = {}
        for cell, config in zip(self.cells, self.configs()):
            hours[cell.setting] = hours.get(cell.setting, 0.0) + estimated_seconds(config) / 3600
        return hours


def plan(options: AblationOptions) -> Plan:
    """Validate everything that needs no Ray: preset, study, flags, every cell's config."""
    check_driver_options(options)
    if not 1 <= options.seeds <= MAX_SEEDS:
        raise SearchError(f"--seeds must be in [1, {MAX_SEEDS:,}] (got {options.seeds})")
    preset = {}
    if options.preset is not None:
        if options.preset not in ABLATION_PRESETS:
            raise SearchError(f"--preset {options.preset}: unknown preset; known: {', '.join(ABLATION_PRESETS)}")
        preset = ABLATION_PRESETS[options.preset]
    base = command_config({**preset, **options.base}, given=options.base)
    refuse_task_ignored_options(base.task, set(options.base) - {"task"})
    study = load_study(options.study, base.task)
    runs = len(study.settings) * len(options.targets or [base.target]) * options.seeds
    if runs > MAX_RUNS:
        # Checked before the grid is built: a grid of 10^8 cells would fill memory first.
        raise SearchError(f"--seeds {options.seeds}: {len(study.settings)} settings x {len(options.targets or [base.target])} "
                          f"targets x {options.seeds} seeds is {runs:,} runs, over the {MAX_RUNS:,} one ablation may hold; "
                          "lower --seeds or split --targets")
    cells = grid(study, base, targets=options.targets, seeds=options.seeds, flags=options.base)
    return Plan(options, study, base, cells)


def ablation_parent_tags(the_plan: Plan) -> dict[str, str]:
    options = the_plan.options
    return {
        "metaxl.kind": "ablation",
        "metaxl.study": the_plan.study.name,
        "metaxl.task": the_plan.base.task,
        "metaxl.targets": ",".join(options.targets),
        "metaxl.seeds": str(options.seeds),
        "metaxl.preset": options.preset or "",
        "metaxl.settings_order": ",".join(the_plan.study.settings),
    }


def run_ablation(options: AblationOptions, *, resume: bool = False, log: Callable[[str], None] = print) -> dict:
    """The ablation's runs on Ray Tune, one driver at a time (driver_lock.py, as a search)."""
    from metaxl_tune.search.driver.lock import driver_lock

    # The name is checked before the lock: the lock file is named after it.
    check_name(options.name)
    with driver_lock(options.storage, options.name, command="ablate", log=log) as lock:
        return _run_locked_ablation(options, resume=resume, log=log, lock=lock)


def _run_locked_ablation(options: AblationOptions, *, resume: bool, log: Callable[[str], None], lock: Any) -> dict:
    options = dataclasses.replace(options, storage=str(Path(options.storage).resolve()))
    if (options.experiment_dir / OPTIONS_FILE).is_file() and not resume:
        raise SearchError(f"an ablation named {options.name} already exists in {options.storage}; "
                          "pass --resume to continue it or choose another --name")
    check_storage_retry(options)
    # A tracking store given is checked first (cheap, creates nothing); the default one last.
    given_uri = given_tracking_uri(options)
    if given_uri is not None:
        check_tracking_uri(given_uri, named=tracking_uri_named(options.tracking_uri))
    the_plan = plan(options)
    fits = check_cells_fit(the_plan)
    from metaxl_tune.search.execution.cluster import check_address, connect, resolve_address

    # The address first: the default tracking store is created on resolving it.
    address = resolve_address(options.address)
    check_address(address, named=address_named(options.address))
    tracking_uri = given_uri or default_tracking_uri(create=True)
    if given_uri is None:
        check_tracking_uri(tracking_uri, named=tracking_uri_named(options.tracking_uri))
    log(f"ablation {options.name}: study {the_plan.study.name}, {len(the_plan.cells)} runs, tracking {mask_uri(tracking_uri)}")
    tune_environment()
    from ray import tune
    from ray.tune.schedulers import FIFOScheduler

    from metaxl_tune.search.records.callbacks import MlflowTrialCallback, ProgressCallback
    from metaxl_tune.search.execution.cluster import check_shared_storage, describe, native_log_path, ray_loss_check
    from metaxl_tune.search.faults.ending import tune_failures
    from metaxl_tune.search.faults.interrupt import Interruption
    from metaxl_tune.search.faults.persistence import StorageWatch
    from metaxl_tune.search.faults.quiet_output import NativeLines
    from metaxl_tune.search.faults.ray_loss import RayLossWatch
    from metaxl_tune.search.execution.resource_fit import TrialRequest, check_trial_fits

    connect(address)
    # After ray.init, which installs a SIGTERM handler of its own (sys.exit).
    interruption = Interruption(say=log).install()
    native, watch = None, None
    records: dict[str, Any] = {}  # the tracker and the parent run, once made: what a stop without Ray closes

    def end_without_ray(signal_name: str, lost: str) -> None:
        # What the rest of this function does after Tune's loop, from the records alone (ray_loss.py).
        try:
            if not (options.experiment_dir / OPTIONS_FILE).is_file():
                log(stopped_line("ablate", options.name, options.storage, OPTIONS_FILE, tracking_uri=options.tracking_uri))
                return
            if records:
                tracker, parent_id = records["tracker"], records["parent_id"]

                def finish_tracking() -> None:
                    tracker.close_interrupted()
                    tracker.end_run(parent_id, "KILLED")

                close_tracking(tracker, options, finish_tracking, log)
                tell_closed()
            log(f"ablation {options.name} interrupted ({signal_name}; {lost} is gone too); its state is saved up to "
                f"Tune's last snapshot. Resume with: {resume_hint('ablate', options.name, options.storage, tracking_uri=options.tracking_uri)}")
        finally:
            lock.release()

    try:
        native = NativeLines(native_log_path())
        watch = RayLossWatch(ray_loss_check(address), end_without_ray, say=log).start()
        log(describe(address))
        check_trial_fits(TrialRequest(options.cpus_per_trial, resolve_gpus(options)),
                         wait_s=options.wait_for_resources_s, log=log)
        check_shared_storage(options.storage)
        _warm_cache(the_plan, fits)
        options.save()
        tracker = Tracker(tracking_uri, options.name)
        parent_id = tracker.parent_run(ablation_parent_tags(the_plan))
        records.update(tracker=tracker, parent_id=parent_id)
        # From here a supervisor closes what a driver ended by Ray leaves open (supervision.py).
        tell_opened({"command": "ablate", "storage": str(options.storage), "name": options.name,
                     "tracking_uri": options.tracking_uri, "resolved_tracking_uri": tracking_uri})
        configs = CellConfigs(the_plan.base)
        gpus = resolve_gpus(options)
        trainable = build_trainable(options, configs, gpus)
        callbacks = [
            MlflowTrialCallback(tracker, parent_id, configs, CellConfigs.tags, sync_hint=sync_hint(options),
                                kept_in=str(options.experiment_dir)),
            ProgressCallback(METRIC, MODE, len(the_plan.cells), ()),
            StorageWatch(options.storage_retry_s),
        ]
        restoring = resume and tune.Tuner.can_restore(str(options.experiment_dir))
        if restoring:
            # State pickled before the modules moved names their old paths (moved_modules.py).
            with old_module_paths(), unknown_modules_refused(options.experiment_dir):
                tuner = tune.Tuner.restore(str(options.experiment_dir), trainable, resume_unfinished=True,
                                           resume_errored=True)
        else:
            tuner = tune.Tuner(
                trainable,
                param_space={"cell": tune.grid_search([dataclasses.asdict(cell) for cell in the_plan.cells])},
                tune_config=tune.TuneConfig(
                    scheduler=FIFOScheduler(),
                    max_concurrent_trials=concurrency(options, gpus),
                    trial_dirname_creator=lambda trial: f"trial_{trial.trial_id}",
                    # A new worker per trial would re-import torch and transformers (seconds each).
                    reuse_actors=True,
                ),
                run_config=build_run_config(options, callbacks, METRIC, MODE),
            )
        with old_module_paths() if restoring else nullcontext():  # Tune loads the pickled state as fit starts
            results = tuner.fit()
    finally:
        stop_ray(watch, native, interruption)
    failures = tune_failures(results)
    done = sum(1 for result in results if result.error is None and not result.metrics.get("stop_reason")
               and result.metrics.get("epoch") == result.metrics.get("epochs_total"))
    finished = not interruption.interrupted and done + failures.failed == len(the_plan.cells)

    def finish_tracking() -> None:
        tracker.close_interrupted()
        tracker.end_run(parent_id, "FINISHED" if finished else "KILLED")

    close_tracking(tracker, options, finish_tracking, log)
    tell_closed()
    return {"name": options.name, "runs": len(the_plan.cells), "completed": done, "failed": failures.failed,
            "finished": finished, "parent_run_id": parent_id, "tracking_uri": mask_uri(tracking_uri),
            "interrupted": interruption.signal_name, "failures": failures}


def _fit_key(config: RunConfig) -> tuple:
    """The fields check_fit and check_value_bounds read: cells equal in them fit alike."""
    return (config.model, config.method, config.task, config.max_length, config.eval_max_length,
            str(config.rtn_layers), config.rtn_bottleneck)


def check_cells_fit(the_plan: Plan) -> dict[tuple, Any]:
    """Every cell's config against its model (RTN depth and size, lengths), before Ray starts:
    a cell that cannot fit would otherwise fail as a trial, once per seed and target. Returns
    the fits (model.fit.ModelFit) by ``_fit_key``, once per distinct key, for the data warm-up."""
    from metaxl_tune.model.fit import check_fit, check_value_bounds  # torch and transformers: only once the cheap checks pass

    fits: dict[tuple, Any] = {}
    for config in the_plan.configs():
        key = _fit_key(config)
        if key not in fits:
            fits[key] = check_fit(config)
            check_value_bounds(config, fits[key])
    return fits


def _warm_cache(the_plan: Plan, fits: dict[tuple, Any]) -> None:
    """Tokenize each distinct dataset once, in the driver, before trials start, at the
    evaluation length each cell's fit found (``fits``, from check_cells_fit)."""
    from metaxl_tune.train.prepare import prepare_data
    from metaxl_tune.common.paths import default_cache_dir

    cache_dir = Path(the_plan.options.cache_dir or default_cache_dir())
    seen = set()
    for config in the_plan.configs():
        # Sizes and the data seed too: training splits are cached as the sample a run takes.
        key = (config.target, config.source, config.task, config.data, config.model, config.max_length,
               config.eval_max_length, config.target_size, config.source_size, config.data_seed)
        if key not in seen:
            seen.add(key)
            prepare_data(config, cache_dir, eval_max_length=fits[_fit_key(config)].eval_max_length)


def rerun_study(configs: dict[str, RunConfig], path: Path, *, origin: str) -> Path:
    """A study whose rows are finished trials' configs (seed left to the grid), saved as YAML so
    the re-run is an ordinary ablation: resumable, tracked, and reportable."""
    import yaml

    settings: dict[str, dict] = {}
    for label, config in configs.items():
        values = {key: value for key, value in config.to_dict().items() if key not in ("seed", "target", "task")}
        # A sampler may propose one config twice (all-categorical spaces); the study refuses
        # identical settings (study.py), and a copy would only re-run the same config.
        if values not in settings.values():
            settings[label] = values
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# {origin}\n" + yaml.safe_dump({"description": origin, "settings": settings}, sort_keys=False))
    return path
