"""`metaxl-tune ablate`: a study's grid (settings x targets x seeds) on the search's Ray
executor and MLflow store, one nested run per cell tagged with its setting."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from metaxl_tune.config import ConfigError, RunConfig, build_config, refuse_task_ignored_options
from metaxl_tune.names import check_name
from metaxl_tune.origins import address_named, flag_for_field, tracking_uri_named
from metaxl_tune.search.runner import (
    OPTIONS_FILE,
    SearchError,
    SearchOptions,
    build_run_config,
    build_trainable,
    check_storage_retry,
    close_tracking,
    concurrency,
    resolve_gpus,
    sync_hint,
    tune_environment,
)
from metaxl_tune.search.study import Cell, Study, estimated_seconds, grid, load_study
from metaxl_tune.tracking import Tracker, check_tracking_uri, default_tracking_uri

SETTING_TAG = "metaxl.setting"
METRIC, MODE = "best_dev_f1", "max"

# Tiny random-init model on synthetic data, sized to run a small grid in minutes on 2 CPUs.
ABLATION_PRESETS: dict[str, dict[str, Any]] = {
    "demo": {"model": "tiny", "data": "synthetic", "epochs": 2, "lr": 3e-3, "meta_lr": 1e-3,
             "rtn_bottleneck": 16, "source_size": 300, "max_length": 64},
}


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
    preset = {}
    if options.preset is not None:
        if options.preset not in ABLATION_PRESETS:
            raise SearchError(f"--preset {options.preset}: unknown preset; known: {', '.join(ABLATION_PRESETS)}")
        preset = ABLATION_PRESETS[options.preset]
    try:
        base = build_config({**preset, **options.base}, origin="options")
    except ConfigError as error:
        raise ConfigError(flag_for_field(str(error), options.base)) from None
    refuse_task_ignored_options(base.task, set(options.base) - {"task"})
    study = load_study(options.study, base.task)
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
    from metaxl_tune.search.driver_lock import driver_lock

    # The name is checked before the lock: the lock file is named after it.
    check_name(options.name)
    with driver_lock(options.storage, options.name, command="ablate", log=log):
        return _run_locked_ablation(options, resume=resume, log=log)


def _run_locked_ablation(options: AblationOptions, *, resume: bool, log: Callable[[str], None]) -> dict:
    options = dataclasses.replace(options, storage=str(Path(options.storage).resolve()))
    if (options.experiment_dir / OPTIONS_FILE).is_file() and not resume:
        raise SearchError(f"an ablation named {options.name} already exists in {options.storage}; "
                          "pass --resume to continue it or choose another --name")
    check_storage_retry(options)
    the_plan = plan(options)
    check_cells_fit(the_plan)
    from metaxl_tune.search.cluster import check_address, connect, resolve_address

    # The address first: the default tracking store is created on resolving it.
    address = resolve_address(options.address)
    check_address(address, named=address_named(options.address))
    tracking_uri = options.tracking_uri or default_tracking_uri(create=True)
    check_tracking_uri(tracking_uri, named=tracking_uri_named(options.tracking_uri))
    log(f"ablation {options.name}: study {the_plan.study.name}, {len(the_plan.cells)} runs, tracking {tracking_uri}")
    tune_environment()
    import ray
    from ray import tune
    from ray.tune.schedulers import FIFOScheduler

    from metaxl_tune.search.callbacks import MlflowTrialCallback, ProgressCallback
    from metaxl_tune.search.cluster import check_shared_storage, describe
    from metaxl_tune.search.ending import tune_failures
    from metaxl_tune.search.interrupt import Interruption
    from metaxl_tune.search.persistence import StorageWatch
    from metaxl_tune.search.resource_fit import TrialRequest, check_trial_fits

    connect(address)
    # After ray.init, which installs a SIGTERM handler of its own (sys.exit).
    interruption = Interruption(say=log).install()
    try:
        log(describe(address))
        check_trial_fits(TrialRequest(options.cpus_per_trial, resolve_gpus(options)),
                         wait_s=options.wait_for_resources_s, log=log)
        check_shared_storage(options.storage)
        _warm_cache(the_plan)
        options.save()
        tracker = Tracker(tracking_uri, options.name)
        parent_id = tracker.parent_run(ablation_parent_tags(the_plan))
        configs = CellConfigs(the_plan.base)
        gpus = resolve_gpus(options)
        trainable = build_trainable(options, configs, gpus)
        callbacks = [
            MlflowTrialCallback(tracker, parent_id, configs, CellConfigs.tags, sync_hint=sync_hint(options)),
            ProgressCallback(METRIC, MODE, len(the_plan.cells), ()),
            StorageWatch(options.storage_retry_s),
        ]
        if resume and tune.Tuner.can_restore(str(options.experiment_dir)):
            tuner = tune.Tuner.restore(str(options.experiment_dir), trainable, resume_unfinished=True, resume_errored=True)
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
        results = tuner.fit()
    finally:
        ray.shutdown()
        interruption.restore()
    failures = tune_failures(results)
    done = sum(1 for result in results if result.error is None and not result.metrics.get("stop_reason")
               and result.metrics.get("epoch") == result.metrics.get("epochs_total"))
    finished = not interruption.interrupted and done + failures.failed == len(the_plan.cells)

    def finish_tracking() -> None:
        tracker.close_interrupted()
        tracker.end_run(parent_id, "FINISHED" if finished else "KILLED")

    close_tracking(tracker, options, finish_tracking, log)
    return {"name": options.name, "runs": len(the_plan.cells), "completed": done, "failed": failures.failed,
            "finished": finished, "parent_run_id": parent_id, "tracking_uri": tracking_uri,
            "interrupted": interruption.signal_name, "failures": failures}


def check_cells_fit(the_plan: Plan) -> None:
    """Every cell's config against its model (RTN depth and size, lengths), before Ray starts:
    a cell that cannot fit would otherwise fail as a trial, once per seed and target."""
    from metaxl_tune.model.fit import check_fit, check_value_bounds  # torch and transformers: only once the cheap checks pass

    seen = set()
    for config in the_plan.configs():
        key = (config.model, config.method, config.task, config.max_length, config.eval_max_length,
               str(config.rtn_layers), config.rtn_bottleneck)
        if key not in seen:
            seen.add(key)
            check_fit(config)
            check_value_bounds(config)


def _warm_cache(the_plan: Plan) -> None:
    """Tokenize each distinct dataset once, in the driver, before trials start."""
    from metaxl_tune.data.prepare import prepare_data
    from metaxl_tune.trainer import default_cache_dir

    cache_dir = Path(the_plan.options.cache_dir or default_cache_dir())
    seen = set()
    for config in the_plan.configs():
        key = (config.target, config.source, config.task, config.data, config.model, config.max_length,
               config.eval_max_length)
        if key not in seen:
            seen.add(key)
            prepare_data(config, cache_dir)


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
