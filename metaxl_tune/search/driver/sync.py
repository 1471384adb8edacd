"""`metaxl-tune sync`: write a search's or ablation's results to MLflow from Tune's own records.

Tune keeps every reported result on disk (``trial_*/result.json``) and each trial's status in
its experiment state, both plain JSON; Optuna keeps the search's own record in its journal.
When MLflow was unreachable for part of a search, lost its store for good, did not take some
files (a full artifact store, artifacts.py), or a search should be copied to another tracking
server, this rebuilds what the driver would have logged:

- the parent run with its tags, its per-config table (results/config_artifact.py), and once
  the search is over its end-of-search params and metrics (counts, best value, device-hours)
  and plots, then FINISHED;
- one nested run per trial (found again by its tags, never duplicated) with its params, tags
  and config, every epoch's metrics that MLflow does not have yet, placement, stop-reason,
  retry and error tags, the best weights, and the final status (a trial MLflow holds as
  interrupted while Tune finished it gets its real outcome).

It writes only what is missing or wrong: a second call changes nothing, end times included.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from metaxl_tune.config import RunConfig
from metaxl_tune.common.names import check_name
from metaxl_tune.common.origins import tracking_uri_named
from metaxl_tune.search.faults.ending import ERROR_TAG
from metaxl_tune.search.faults.quiet_output import quiet_mlflow_output
from metaxl_tune.search.records.artifacts import ArtifactUploads
from metaxl_tune.search.records.trial_record import (
    TUNE_ERROR_FILE, config_upload, epoch_metrics, error_tag, outcome, placement_tags, stop_tags, trial_params,
    used_size_params, weights_upload,
)
from metaxl_tune.search.space.pruning import stopped_because
from metaxl_tune.search.space.racing import seed_cap
from metaxl_tune.search.space.schema import SearchSpace
from metaxl_tune.search.records.restarts import TrialLedger
from metaxl_tune.search.driver.options import (
    OPTIONS_FILE, SearchError, SearchOptions, apply_preset, load_search_study, read_options_file,
)
from metaxl_tune.search.driver.preflight import resolve_space
from metaxl_tune.search.driver.runner import search_parent_tags, study_best, study_counts
from metaxl_tune.search.records.plots import PLOTS_ARTIFACT_DIR, upload_plots
from metaxl_tune.search.driver.warm_start import study_source_tag
from metaxl_tune.common.secrets import mask_uri
from metaxl_tune.results.config_artifact import upload_config_table
from metaxl_tune.results.tracking import (
    BEST_ARTIFACT_DIR, BEST_WEIGHTS_FILE, CONFIG_ARTIFACT, INTERRUPTED, OUTCOME_TAG, Tracker, check_tracking_uri, default_tracking_uri,
    usable_saved_uri,
)

ENDED = {"TERMINATED": False, "ERROR": True}
"""Tune trial statuses that are final, and whether they mean an error."""


RETRIES_TAG = "metaxl.retries"
"""= the driver's tag of a trial Tune restarted after a failure (callbacks.on_trial_recover)."""


@dataclass
class SyncReport:
    name: str
    tracking_uri: str
    trials: int
    epochs_written: int
    runs_closed: int
    parent_status: str | None
    files_uploaded: int = 0
    files_failed: int = 0
    """Files the artifact store did not take (said on one line; sync again once there is room)."""


@dataclass
class _Experiment:
    options: SearchOptions
    to_config: Callable[[dict], RunConfig]
    trial_tags: Callable[[dict], dict[str, str]] | None
    parent_tags: dict[str, str]
    expected_trials: int
    space: SearchSpace | None
    """A search's space (its metric and mode); None for an ablation."""


def _load(storage: str, name: str) -> _Experiment:
    path = Path(storage).resolve() / check_name(name) / OPTIONS_FILE
    if not path.is_file():
        raise SearchError(f"no search or ablation named {name} in {Path(storage).resolve()} (no {path}); "
                          "check --name and --storage")
    raw = read_options_file(path)
    if "study" in raw:
        from metaxl_tune.search.driver.ablate import AblationOptions, CellConfigs, ablation_parent_tags, plan

        the_plan = plan(AblationOptions(**raw))
        return _Experiment(the_plan.options, CellConfigs(the_plan.base), CellConfigs.tags,
                           ablation_parent_tags(the_plan), len(the_plan.cells), space=None)
    from metaxl_tune.search.space.trial_configs import TrialConfigs

    options = apply_preset(SearchOptions(**raw))
    space, base = resolve_space(options)
    from metaxl_tune.search.space.racing_search import race_tags

    return _Experiment(options, TrialConfigs(base, space), race_tags, search_parent_tags(space, base, options),
                       options.num_samples, space=space)


def trial_states(experiment_dir: Path) -> dict[str, tuple[str, int]]:
    """Trial id -> (Tune status: PENDING, RUNNING, TERMINATED, ERROR..., failures so far) from the
    newest experiment state; the fields read are JSON (nothing is unpickled)."""
    states = sorted(experiment_dir.glob("experiment_state-*.json"))
    if not states:
        return {}
    found = {}
    for entry in json.loads(states[-1].read_text())["trial_data"]:
        trial = json.loads(entry[0])
        metadata = json.loads(entry[1]) if len(entry) > 1 and entry[1] else {}
        found[trial["trial_id"]] = (trial["status"], int(metadata.get("num_failures", 0) or 0))
    return found


def _results(trial_dir: Path) -> list[dict[str, Any]]:
    path = trial_dir / "result.json"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _latest_checkpoint(trial_dir: Path) -> Path | None:
    """The newest checkpoint Tune kept: it carries the trial's best-dev weights."""
    kept = sorted(trial_dir.glob("checkpoint_*"))
    return kept[-1] if kept else None


def _retries(status: str | None, failures: int) -> int:
    """Restarts after a failure: every failure, but the last of a trial that failed for good."""
    return max(0, failures - (1 if status == "ERROR" else 0))


def _stored(client, run_id: str, folder: str | None = None) -> dict[str, int | None]:
    """Artifact file name -> size, in the run's root or ``folder`` (a failed upload can leave
    the folder behind, empty, or a file cut short)."""
    return {Path(item.path).name: item.file_size for item in client.list_artifacts(run_id, folder) if not item.is_dir}


@dataclass
class _Counts:
    epochs: int = 0
    closed: int = 0
    uploaded: int = 0


def sync(storage: str, name: str, *, tracking_uri: str | None = None, log: Callable[[str], None] = print) -> SyncReport:
    quiet_mlflow_output()
    experiment = _load(storage, name)
    options = experiment.options
    experiment_dir = Path(storage).resolve() / name
    options_file = experiment_dir / OPTIONS_FILE
    uri = tracking_uri or (options.tracking_uri and usable_saved_uri(options.tracking_uri, options_file)) or default_tracking_uri()
    saved = tracking_uri is None and options.tracking_uri is not None
    check_tracking_uri(uri, named=f"the tracking URI saved in {options_file}" if saved
                       else tracking_uri_named(tracking_uri))
    tracker = Tracker(uri, name)
    hint = f"metaxl-tune sync --name {name} --storage {Path(storage).resolve()}"
    if tracking_uri:
        hint += f" --tracking-uri {mask_uri(uri)}"
    uploads = ArtifactUploads(tracker, kept_in=experiment_dir, sync_hint=hint, say=log)
    study = load_search_study(options) if experiment.space is not None else None
    parent_tags = {**experiment.parent_tags, **(study_source_tag(study) if study is not None else {})}
    parent_id = tracker.parent_run(parent_tags, reopen=False)
    states = trial_states(experiment_dir)

    done = _Counts()
    trial_dirs = sorted(path for path in experiment_dir.glob("trial_*") if (path / "params.json").is_file())
    for trial_dir in trial_dirs:
        _sync_trial(tracker, experiment, trial_dir, parent_id, states, uploads, done)

    if experiment.space is not None:
        # The per-config table, from the trial runs as they now are (rewritten only if it changed).
        done.uploaded += upload_config_table(tracker, parent_id, experiment.space.metric, uploads.upload)
    ended = sum(1 for status, _ in states.values() if status in ENDED)
    parent_status = None
    if states and ended == len(states) and ended >= experiment.expected_trials:
        parent_status = "FINISHED"
        _finish_parent(tracker, experiment, study, parent_id, experiment_dir, uploads, done)
    files = f"; {done.uploaded} files uploaded" + (f", {uploads.failed} not taken (see above)" if uploads.failed else "")
    log(f"sync {name}: {len(trial_dirs)} trials, {done.epochs} epoch results and {done.closed} final statuses "
        f"written to {mask_uri(uri)}{files}")
    return SyncReport(name, uri, len(trial_dirs), done.epochs, done.closed, parent_status, done.uploaded, uploads.failed)


def _sync_trial(tracker: Tracker, experiment: _Experiment, trial_dir: Path, parent_id: str,
                states: dict[str, tuple[str, int]], uploads: ArtifactUploads, done: _Counts) -> None:
    client = tracker.client
    rows = _results(trial_dir)
    trial_id = rows[-1]["trial_id"] if rows else trial_dir.name.removeprefix("trial_")
    trial_config = json.loads((trial_dir / "params.json").read_text())
    config = experiment.to_config(trial_config)
    tags = experiment.trial_tags(trial_config) if experiment.trial_tags is not None else {}
    run_id = tracker.trial_run(parent_id, trial_id, trial_params(config), tags, reopen=False)
    run = client.get_run(run_id)
    # What a run made before the server went away (or by the driver, before the trial's first
    # result) may lack: params are write-once, so only missing ones are written.
    sizes = next((used_size_params(row) for row in rows if used_size_params(row)), {})
    missing = {key: value for key, value in {**trial_params(config), **sizes}.items() if key not in run.data.params}
    if missing:
        tracker.log_params(run_id, missing)
    stale = {key: value for key, value in tags.items() if run.data.tags.get(key) != str(value)}
    if stale:
        tracker.set_tags(run_id, stale)
    if CONFIG_ARTIFACT not in _stored(client, run_id):
        done.uploaded += uploads.upload(*config_upload(tracker, run_id, config, trial_id))

    logged = {metric.step for metric in client.get_metric_history(run_id, "dev_f1")}
    # result.json holds the rows of every attempt Tune retried, in order (a search restored by
    # --resume keeps only the new attempt's): the time is counted from the first row, and a
    # redone epoch is written once, as the driver does (restarts.py).
    ledger = TrialLedger()
    for row in rows:
        if stopped_because(row) is not None:
            written = stop_tags(row)
            if any(run.data.tags.get(key) != value for key, value in written.items()):
                tracker.set_tags(run_id, written)
        elif "epoch" in row and int(row["epoch"]) not in logged:
            spent = ledger.account(row)
            tracker.log_metrics(run_id, {**epoch_metrics(row), **spent}, step=int(row["epoch"]),
                                tags={**placement_tags(row), **(ledger.tags() if spent else {})})
            logged.add(int(row["epoch"]))
            done.epochs += 1
        elif "epoch" in row:
            ledger.account(row)

    status, failures = states.get(trial_id, (None, 0))
    retries = _retries(status, failures)
    if retries and run.data.tags.get(RETRIES_TAG) != str(retries):
        tracker.set_tags(run_id, {RETRIES_TAG: str(retries)})
    if status not in ENDED:
        return
    mlflow_status, outcome_tag = outcome(rows[-1] if rows else None, ENDED[status])
    # A run the driver could not close (the server away at the end), or closed as interrupted
    # while Tune went on to finish the trial, gets the outcome Tune recorded.
    said = run.data.tags.get(OUTCOME_TAG)
    if run.info.status == "RUNNING" or said is None or said == INTERRUPTED:
        error = {ERROR_TAG: error_tag(trial_dir / TUNE_ERROR_FILE)} if ENDED[status] else {}
        tracker.set_tags(run_id, {OUTCOME_TAG: outcome_tag, **error})
        tracker.end_run(run_id, mlflow_status)
        done.closed += 1
    checkpoint = _latest_checkpoint(trial_dir)
    weights = checkpoint / BEST_WEIGHTS_FILE if checkpoint is not None else None
    if (weights is not None and weights.is_file() and mlflow_status != "FAILED" and config.model_artifacts
            and _stored(client, run_id, BEST_ARTIFACT_DIR).get(BEST_WEIGHTS_FILE) != weights.stat().st_size):
        done.uploaded += uploads.upload(*weights_upload(tracker, run_id, checkpoint, trial_id))


def _finish_parent(tracker: Tracker, experiment: _Experiment, study: Any, parent_id: str, experiment_dir: Path,
                   uploads: ArtifactUploads, done: _Counts) -> None:
    """An over search's summary (as the driver writes it: log_search_summary writes nothing that
    is there already), status, and plots."""
    client = tracker.client
    space = experiment.space
    if space is not None:
        options = experiment.options
        best = study_best(study, space.mode, cap=seed_cap(options.repeats, options.max_repeats))
        tracker.log_search_summary(parent_id, metric=space.metric, best=best and best["value"],
                                   counts=study_counts(study), space=space.origin)
    if client.get_run(parent_id).info.status != "FINISHED":
        tracker.end_run(parent_id, "FINISHED")
    if space is not None:
        stored = _stored(client, parent_id, PLOTS_ARTIFACT_DIR)
        done.uploaded += upload_plots(tracker, parent_id, study, experiment_dir / "plots", uploads,
                                      missing=lambda path: path.name not in stored)
