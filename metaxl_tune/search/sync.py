"""`metaxl-tune sync`: write a search's or ablation's results to MLflow from Tune's own records.

Tune keeps every reported result on disk (``trial_*/result.json``) and each trial's status in
its experiment state, both plain JSON. When MLflow was unreachable for part of a search, or
a search should be copied to another tracking server, this rebuilds what the driver would have
logged: one nested run per trial (found again by its tags, never duplicated), every epoch's
metrics that MLflow does not have yet, placement and stop-reason tags, the best checkpoint,
and the final status. Running it twice changes nothing the second time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from metaxl_tune.config import RunConfig
from metaxl_tune.names import check_name
from metaxl_tune.origins import tracking_uri_named
from metaxl_tune.search.callbacks import epoch_metrics, outcome, placement_tags, stop_tags, used_size_params
from metaxl_tune.search.pruning import stopped_because
from metaxl_tune.search.restarts import TrialLedger
from metaxl_tune.search.runner import (
    OPTIONS_FILE,
    SearchError,
    SearchOptions,
    apply_preset,
    attach_plots,
    load_search_study,
    read_options_file,
    resolve_space,
    search_parent_tags,
)
from metaxl_tune.tracking import BEST_ARTIFACT_DIR, OUTCOME_TAG, Tracker, check_tracking_uri, default_tracking_uri

ENDED = {"TERMINATED": False, "ERROR": True}
"""Tune trial statuses that are final, and whether they mean an error."""


@dataclass
class SyncReport:
    name: str
    tracking_uri: str
    trials: int
    epochs_written: int
    runs_closed: int
    parent_status: str | None


@dataclass
class _Experiment:
    options: SearchOptions
    to_config: Callable[[dict], RunConfig]
    trial_tags: Callable[[dict], dict[str, str]] | None
    parent_tags: dict[str, str]
    expected_trials: int
    is_search: bool


def _load(storage: str, name: str) -> _Experiment:
    path = Path(storage).resolve() / check_name(name) / OPTIONS_FILE
    if not path.is_file():
        raise SearchError(f"no search or ablation named {name} in {Path(storage).resolve()} (no {path}); "
                          "check --name and --storage")
    raw = read_options_file(path)
    if "study" in raw:
        from metaxl_tune.search.ablate import AblationOptions, CellConfigs, ablation_parent_tags, plan

        the_plan = plan(AblationOptions(**raw))
        return _Experiment(the_plan.options, CellConfigs(the_plan.base), CellConfigs.tags,
                           ablation_parent_tags(the_plan), len(the_plan.cells), is_search=False)
    from metaxl_tune.search.trainable import TrialConfigs

    options = apply_preset(SearchOptions(**raw))
    space, base = resolve_space(options)
    return _Experiment(options, TrialConfigs(base, space), None, search_parent_tags(space, base, options),
                       options.num_samples, is_search=True)


def trial_statuses(experiment_dir: Path) -> dict[str, str]:
    """Trial id -> Tune status (PENDING, RUNNING, TERMINATED, ERROR...) from the newest
    experiment state; the fields read are JSON (nothing is unpickled)."""
    states = sorted(experiment_dir.glob("experiment_state-*.json"))
    if not states:
        return {}
    statuses = {}
    for entry in json.loads(states[-1].read_text())["trial_data"]:
        trial = json.loads(entry[0])
        statuses[trial["trial_id"]] = trial["status"]
    return statuses


def _results(trial_dir: Path) -> list[dict[str, Any]]:
    path = trial_dir / "result.json"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _latest_checkpoint(trial_dir: Path) -> Path | None:
    """The newest checkpoint Tune kept: it carries the trial's best-dev weights."""
    kept = sorted(trial_dir.glob("checkpoint_*"))
    return kept[-1] if kept else None


def sync(storage: str, name: str, *, tracking_uri: str | None = None, log: Callable[[str], None] = print) -> SyncReport:
    experiment = _load(storage, name)
    options = experiment.options
    experiment_dir = Path(storage).resolve() / name
    uri = tracking_uri or options.tracking_uri or default_tracking_uri()
    saved = tracking_uri is None and options.tracking_uri is not None
    check_tracking_uri(uri, named=f"the tracking URI saved in {experiment_dir / OPTIONS_FILE}" if saved
                       else tracking_uri_named(tracking_uri))
    tracker = Tracker(uri, name)
    client = tracker.client
    parent_id = tracker.parent_run(experiment.parent_tags, reopen=False)
    statuses = trial_statuses(experiment_dir)

    epochs_written = runs_closed = 0
    trial_dirs = sorted(path for path in experiment_dir.glob("trial_*") if (path / "params.json").is_file())
    for trial_dir in trial_dirs:
        rows = _results(trial_dir)
        trial_id = rows[-1]["trial_id"] if rows else trial_dir.name.removeprefix("trial_")
        trial_config = json.loads((trial_dir / "params.json").read_text())
        config = experiment.to_config(trial_config)
        tags = experiment.trial_tags(trial_config) if experiment.trial_tags is not None else {}
        run_id = tracker.trial_run(parent_id, trial_id, config.to_dict(), config.to_yaml(), tags, reopen=False)
        logged = {metric.step for metric in client.get_metric_history(run_id, "dev_f1")}
        # result.json holds the rows of every attempt Tune retried, in order (a search restored by
        # --resume keeps only the new attempt's): the time is counted from the first row, and a
        # redone epoch is written once, as the driver does (restarts.py).
        ledger = TrialLedger()
        for row in rows:
            if stopped_because(row) is not None:
                tracker.set_tags(run_id, stop_tags(row))
            elif "epoch" in row and int(row["epoch"]) not in logged:
                spent = ledger.account(row)
                tracker.log_metrics(run_id, {**epoch_metrics(row), **spent}, step=int(row["epoch"]),
                                    tags={**placement_tags(row), **(ledger.tags() if spent else {})})
                if not logged and used_size_params(row):
                    tracker.log_params(run_id, used_size_params(row))
                logged.add(int(row["epoch"]))
                epochs_written += 1
            elif "epoch" in row:
                ledger.account(row)
        status = statuses.get(trial_id)
        if status not in ENDED:
            continue
        run = client.get_run(run_id)
        if run.info.status != "RUNNING" and OUTCOME_TAG in run.data.tags:
            continue
        mlflow_status, outcome_tag = outcome(rows[-1] if rows else None, ENDED[status])
        checkpoint = _latest_checkpoint(trial_dir)
        if (checkpoint is not None and mlflow_status != "FAILED" and config.model_artifacts
                and not client.list_artifacts(run_id, BEST_ARTIFACT_DIR)):
            tracker.log_best_weights(run_id, checkpoint)
        tracker.set_tags(run_id, {OUTCOME_TAG: outcome_tag})
        tracker.end_run(run_id, mlflow_status)
        runs_closed += 1

    ended = sum(1 for trial_id in statuses if statuses[trial_id] in ENDED)
    parent_status = None
    if statuses and ended == len(statuses) and ended >= experiment.expected_trials:
        parent_status = "FINISHED"
        if experiment.is_search and not client.list_artifacts(parent_id, "plots"):
            attach_plots(tracker, parent_id, load_search_study(options), experiment_dir / "plots")
        tracker.end_run(parent_id, parent_status)
    log(f"sync {name}: {len(trial_dirs)} trials, {epochs_written} epoch results and {runs_closed} final statuses "
        f"written to {uri}")
    return SyncReport(name, uri, len(trial_dirs), epochs_written, runs_closed, parent_status)
