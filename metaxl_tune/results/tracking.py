"""MLflow tracking for searches: one parent run per search, one nested run per trial.

All MLflow traffic comes from the driver: trials never talk to the tracking server, so a
trial's time is spent training, and a tracking outage cannot fail a trial. Runs are found
again by tags (``metaxl.search``, ``metaxl.trial_id``), so a resumed search continues its
runs instead of duplicating them.

Embedded default: ``sqlite:///metaxl-runs/mlflow.db``, artifacts in ``metaxl-runs/mlartifacts``
(see ``paths``); ``--tracking-uri`` or ``MLFLOW_TRACKING_URI`` select a server.

Over ~400 lines as one job, the MLflow store of searches: its address (checked, defaulted, the
sqlite store created under a lock), the ``Tracker`` that writes and finds a search's runs by
its tags, and the UI's view of them and its server command. The tag names and the store
address they all read are defined once, here.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import time
import urllib.parse
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from metaxl_tune.common.secrets import mask_text, mask_uri, remember, unmask
from metaxl_tune.results.mlflow_filters import tag_equals, tags_equal
# The URI checks live in tracking_uri.py; their names are imported from here too.
from metaxl_tune.results.tracking_uri import (  # noqa: F401
    DEFAULT_DB, TrackingError, check_tracking_uri, default_tracking_uri, server_answers, usable_saved_uri,
)

EXPERIMENT = "metaxl-tune"
SEARCH_TAG = "metaxl.search"
TRIAL_TAG = "metaxl.trial_id"
OUTCOME_TAG = "metaxl.outcome"
CONFIG_ID_TAG = "metaxl.config_id"
"""A trial's config identity (config/identity.config_id of its searched values), shared by every
seed of one config (issue #25)."""
SEED_TAG = "metaxl.seed"
"""The training seed a trial used (also its ``seed`` param)."""
REPEAT_TAG = "metaxl.repeat"
"""Which of its config's runs a trial is (0 = the first seed), under paired seeds."""
INTERRUPTED = "interrupted"
PARENT_TAG = "mlflow.parentRunId"
DEFAULT_ARTIFACTS = "mlartifacts"

BEST_ARTIFACT_DIR = "best"
"""Artifact folder of a trial's best-dev weights (theta and phi): ``best/best.safetensors``."""
CONFIG_ARTIFACT = "config.yaml"
BEST_WEIGHTS_FILE = "best.safetensors"  # = checkpoint.BEST_FILE (not imported: no torch in the driver's CLI)
# MLflow 3 opens an experiment on its GenAI traces overview unless it is marked as model
# training; marked, the UI lands on the runs table, where a search's parent run expands into its trials.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"

# MLflow caps one log_batch call at 1000 metrics and 100 params.
_MAX_PARAMS_PER_CALL = 100


def open_client(uri: str, *, verbose: bool = False) -> MlflowClient:
    """A client of ``uri`` whose store exists. MLflow creates a sqlite store's tables and runs its
    migrations when a process first opens it; two processes doing that at once on one new file
    (two searches started together on a fresh default store) fail with ``table ... already
    exists`` or ``duplicate column``. So the first open is done under an OS file lock next to
    the database, ``<db>.lock``: one process creates the store, the others find it made.
    MLflow's INFO lines about creating the tables are shown only when ``verbose``."""
    database = Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None
    if database is None or not database.parent.is_dir():
        return MlflowClient(tracking_uri=uri)
    with _store_creation_lock(database), _store_creation_said(verbose):
        # The client opens (and creates) its store as it is built.
        return MlflowClient(tracking_uri=uri)


@contextlib.contextmanager
def _store_creation_said(verbose: bool) -> Iterator[None]:
    # "Creating initial MLflow database tables..." and "Updating database tables": MLflow's
    # bookkeeping, not the command's; raised only around the open, so its warnings still show.
    logger = logging.getLogger("mlflow.store.db.utils")
    level = logger.level
    if not verbose:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def _store_creation_lock(database: Path) -> Iterator[None]:
    # The lock file stays: removing it would let a process that already opened it lock a file
    # that the next process no longer sees.
    try:
        descriptor = os.open(database.with_name(database.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        # A folder this process cannot write: it cannot create the store either, only read one.
        yield
        return
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
        except OSError:
            pass  # a file system without locks (some FUSE mounts): open the store as MLflow would
        yield
    finally:
        os.close(descriptor)


class Tracker:
    """The MLflow side of one search (picklable: the client is rebuilt on demand)."""

    def __init__(self, tracking_uri: str, search_name: str, *, experiment: str = EXPERIMENT, verbose: bool = False):
        self.tracking_uri = tracking_uri
        remember(tracking_uri)
        self.search_name = search_name
        self.experiment = experiment
        self.verbose = verbose
        """Show MLflow's own lines about creating a new store (``--verbose``)."""
        self._client: MlflowClient | None = None
        self._experiment_id: str | None = None

    def __getstate__(self) -> dict[str, Any]:
        # Tune saves its callbacks, and this tracker with them, in the search's folder: the URI
        # goes there masked, and comes back whole in the driver that was given it (secrets.unmask).
        return {**self.__dict__, "_client": None, "tracking_uri": mask_uri(self.tracking_uri)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.tracking_uri = unmask(self.tracking_uri)

    @property
    def shown_uri(self) -> str:
        """The tracking URI as messages show it: credentials masked."""
        return mask_uri(self.tracking_uri)

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
            # A search holds and retries its own calls while a server is down (tracking_queue);
            # MLflow's default of 7 retries with exponential backoff would stall each call minutes.
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
            # getattr: a Tracker pickled (in Tune's callbacks) before it had the attribute.
            self._client = open_client(self.tracking_uri, verbose=getattr(self, "verbose", False))
        return self._client

    def reachable(self) -> bool:
        """Whether the tracking store answers now (a server's health endpoint, or a query)."""
        if self.tracking_uri.startswith(("http://", "https://")):
            return server_answers(self.tracking_uri, timeout=3.0)
        try:
            self.client.search_experiments(max_results=1)
        except Exception:  # noqa: BLE001 - any failure means "not usable now"
            return False
        return True

    @property
    def experiment_id(self) -> str:
        if self._experiment_id is None:
            found = self.client.get_experiment_by_name(self.experiment)
            if found is not None:
                self._check_artifacts_reachable(found.artifact_location or "")
                self._experiment_id = found.experiment_id
            else:
                location = None
                if self.tracking_uri.startswith("sqlite:"):
                    db_path = Path(self.tracking_uri.removeprefix("sqlite:///"))
                    location = (db_path.parent / DEFAULT_ARTIFACTS).resolve().as_uri()
                self._experiment_id = self.client.create_experiment(
                    self.experiment, artifact_location=location, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}
                )
        return self._experiment_id

    def _check_artifacts_reachable(self, location: str) -> None:
        """A store a server writes with --serve-artifacts keeps its artifacts behind that server
        (``mlflow-artifacts:``): opened directly (postgresql://, sqlite:///), no config, weights
        or report could be read or written. One line, before any work."""
        if location.startswith("mlflow-artifacts:") and not self.tracking_uri.startswith(("http://", "https://")):
            raise TrackingError(
                f"{self.shown_uri}: the artifacts of this store are served by an MLflow server "
                f"({location.split('/')[0]}), so they cannot be reached from the database directly; "
                "pass that server's http(s)://HOST:PORT as --tracking-uri"
            )

    def mark_experiment(self) -> None:
        """Mark an experiment created before the kind tag existed (searches call this on start)."""
        experiment = self.client.get_experiment(self.experiment_id)
        if experiment.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:
            self.client.set_experiment_tag(self.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)

    def log_search_summary(
        self, parent_id: str, *, metric: str, best: float | None, counts: Mapping[str, int], space: str
    ) -> dict[str, float]:
        """The search's result on its parent run, so searches line up side by side in the runs
        table: the best ``metric`` (same column as the trials'), trials per outcome, device-hours
        (pruned and failed trials spent them too), and the space as a param."""
        seconds: dict[str, float] = {}
        for run in self.trial_runs():
            device = run.data.tags.get("metaxl.device_type", "unknown")
            # The spent tag (search/records/restarts.py) holds every attempt's time, also for a trial that
            # ended while redoing epochs, whose last device_seconds metric left the redo out.
            spent = run.data.tags.get("metaxl.spent_device_seconds")
            seconds[device] = seconds.get(device, 0.0) + (
                float(spent) if spent is not None else run.data.metrics.get("device_seconds", 0.0))
        metrics = {f"trials_{outcome}": float(count) for outcome, count in counts.items()}
        metrics["trials_total"] = float(sum(counts.values()))
        metrics["device_hours"] = sum(seconds.values()) / 3600
        metrics.update({f"{'gpu' if device == 'cuda' else device}_hours": value / 3600 for device, value in seconds.items()})
        if best is not None:
            metrics[metric] = best
        # Written again only when it changed, one step further each time (a resumed search's
        # counts would otherwise hold two values at one step), so `sync` after the driver, or
        # twice, writes nothing.
        run = self.client.get_run(parent_id)
        params = [Param(key, value) for key, value in (("space", mask_text(space)), ("metric", metric))
                  if key not in run.data.params]
        changed = {key: value for key, value in metrics.items() if run.data.metrics.get(key) != value}
        if not changed and not params:
            return metrics
        steps = [entry.step for entry in self.client.get_metric_history(parent_id, "trials_total")]
        step = max(steps) + 1 if steps else 0
        now = int(time.time() * 1000)
        self.client.log_batch(
            parent_id, metrics=[Metric(key, value, now, step) for key, value in metrics.items()] if changed else [],
            params=params,
        )
        return metrics

    # ---- runs ------------------------------------------------------------------------------

    def _find(self, tags: Mapping[str, str]) -> str | None:
        runs = self.client.search_runs([self.experiment_id], filter_string=tags_equal(tags), max_results=1)
        return runs[0].info.run_id if runs else None

    def parent_run(self, tags: Mapping[str, str], *, reopen: bool = True) -> str:
        """The search's parent run, created on first use and reopened (RUNNING) on resume."""
        existing = self._find({SEARCH_TAG: self.search_name, "metaxl.role": "search"})
        if existing is not None:
            if reopen:
                self.client.update_run(existing, status="RUNNING")
            return existing
        run = self.client.create_run(
            self.experiment_id,
            run_name=self.search_name,
            tags=_masked({SEARCH_TAG: self.search_name, "metaxl.role": "search", **tags}),
        )
        return run.info.run_id

    def trial_run(
        self,
        parent_id: str,
        trial_id: str,
        params: Mapping[str, Any],
        tags: Mapping[str, str] | None = None,
        *,
        reopen: bool = True,
    ) -> str:
        """The trial's nested run; a restarted trial gets its existing run back (RUNNING again).
        Its config.yaml is uploaded apart (``log_config``): a full artifact store must not stop
        the run from being made."""
        existing = self._find({SEARCH_TAG: self.search_name, TRIAL_TAG: trial_id})
        if existing is not None:
            if reopen:
                self.reopen(existing)
            # MLflow makes a run and logs its params in two calls: a driver killed between them
            # left the run without params, which the trial's next run must still record.
            logged = self.client.get_run(existing).data.params
            self.log_params(existing, {key: value for key, value in params.items() if key not in logged})
            return existing
        run = self.client.create_run(
            self.experiment_id,
            run_name=f"{self.search_name}/{trial_id}",
            tags=_masked({SEARCH_TAG: self.search_name, TRIAL_TAG: trial_id, PARENT_TAG: parent_id, "metaxl.role": "trial",
                          **(tags or {})}),
        )
        run_id = run.info.run_id
        self.log_params(run_id, params)
        return run_id

    def log_config(self, run_id: str, config_yaml: str) -> None:
        """The trial's resolved config, as the ``config.yaml`` artifact that ``best`` exports."""
        self.client.log_text(run_id, mask_text(config_yaml), CONFIG_ARTIFACT)

    def log_metrics(
        self, run_id: str, metrics: Mapping[str, float], step: int, tags: Mapping[str, str] | None = None
    ) -> None:
        """One epoch's metrics (and any tags) in a single call."""
        stamp = int(time.time() * 1000)
        self.client.log_batch(
            run_id,
            metrics=[Metric(key, float(value), stamp, step) for key, value in metrics.items()],
            tags=[RunTag(key, value) for key, value in _masked(tags or {}).items()],
        )

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        """Params known only once a trial runs (the data sizes it actually used)."""
        items = [Param(key, value) for key, value in _masked(params).items()]
        for start in range(0, len(items), _MAX_PARAMS_PER_CALL):
            self.client.log_batch(run_id, params=items[start : start + _MAX_PARAMS_PER_CALL])

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        self.client.log_batch(run_id, tags=[RunTag(key, value) for key, value in _masked(tags).items()])

    def log_artifacts(self, run_id: str, directory: Path, artifact_path: str) -> None:
        self.client.log_artifacts(run_id, str(directory), artifact_path)

    def log_best_weights(self, run_id: str, checkpoint_dir: Path) -> bool:
        """Upload the best-dev weights a trial's final checkpoint carries (once, when it ends);
        never the resume state, which is 3x larger and only useful to the trial itself."""
        path = Path(checkpoint_dir) / BEST_WEIGHTS_FILE
        if not path.is_file():
            return False
        self.client.log_artifact(run_id, str(path), BEST_ARTIFACT_DIR)
        return True

    def log_files(self, run_id: str, files: Iterable[Path], artifact_path: str | None = None) -> None:
        for path in files:
            self.client.log_artifact(run_id, str(path), artifact_path)

    def end_run(self, run_id: str, status: str) -> None:
        self.client.set_terminated(run_id, status=status)

    def reopen(self, run_id: str) -> None:
        """RUNNING again, for a trial that continues (an interrupted search being resumed)."""
        self.client.update_run(run_id, status="RUNNING")
        if self.client.get_run(run_id).data.tags.get(OUTCOME_TAG) == INTERRUPTED:
            self.client.delete_tag(run_id, OUTCOME_TAG)

    def close_interrupted(self) -> int:
        """End the trial runs still RUNNING when a search stops: KILLED with the outcome
        ``interrupted``. After Ctrl-C or SIGTERM a resume reopens them; once a search is over
        the ones left are trials proposed just before a driver died, which the restored search
        never ran. Returns how many were closed."""
        stale = [run for run in self.trial_runs() if run.info.status == "RUNNING"]
        for run in stale:
            self.set_tags(run.info.run_id, {OUTCOME_TAG: INTERRUPTED})
            self.end_run(run.info.run_id, "KILLED")
        return len(stale)

    # ---- reading (best, report) ------------------------------------------------------------------

    def share_search_view(self) -> str:
        """Store the search's runs view on the experiment (the UI's own "share view" tag); its key."""
        parent = self._find({SEARCH_TAG: self.search_name, "metaxl.role": "search"})
        run = self.client.get_run(parent) if parent is not None else None
        searched = [key for key in (run.data.tags.get("metaxl.searched", "") if run else "").split(",") if key]
        metric = run.data.params.get("metric", "best_dev_f1") if run else "best_dev_f1"
        key = f"metaxl-{self.search_name}"
        state = search_view_state(self.search_name, searched, metric)
        self.client.set_experiment_tag(self.experiment_id, SHARED_VIEW_TAG + key, mask_text(json.dumps(state)))
        return key

    def trial_runs_exist(self) -> bool:
        """Whether the store holds this search (read-only: creates no experiment)."""
        if self.tracking_uri.startswith("sqlite:///") and not Path(self.tracking_uri.removeprefix("sqlite:///")).is_file():
            return False
        if self.client.get_experiment_by_name(self.experiment) is None:
            return False
        return self._find({SEARCH_TAG: self.search_name}) is not None

    def trial_runs(self) -> list:
        query = tags_equal({SEARCH_TAG: self.search_name, "metaxl.role": "trial"})
        return self.client.search_runs([self.experiment_id], filter_string=query, max_results=50_000)


SHARED_VIEW_TAG = "mlflow.sharedViewState."


def _masked(values: Mapping[str, Any]) -> dict[str, str]:
    """MLflow params and tags as strings, with any credential in them masked (common/secrets.py)."""
    return {key: mask_text(str(value)) for key, value in values.items()}


def _column(kind: str, key: str) -> str:
    return f"{kind}.`{key}`"  # the MLflow UI's column ids


def search_view_state(search_name: str, searched: list[str], metric: str) -> dict[str, Any]:
    """A runs-table view of one search, as the MLflow UI's "share view" stores it: the search's
    runs only, grouped by role (its parent run with the search's summary, then its trials),
    with the metric and every searched parameter as columns."""
    metrics = dict.fromkeys([metric, "best_test_f1", "trials_completed", "trials_pruned", "device_hours"])
    return {
        "searchFilter": tag_equals(SEARCH_TAG, search_name),
        "orderByKey": "attributes.start_time",
        "orderByAsc": True,
        "selectedColumns": [*(_column("metrics", key) for key in metrics), *(_column("params", key) for key in searched)],
        "groupBy": {"aggregateFunction": "max", "groupByKeys": [{"mode": "tag", "groupByData": "metaxl.role"}]},
    }


def search_runs_url(base_url: str, experiment_id: str, view_key: str) -> str:
    """The MLflow UI's runs table opened on a shared view (see ``Tracker.share_search_view``)."""
    return f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs?viewStateShareKey={urllib.parse.quote(view_key, safe='')}"


def server_command(backend_uri: str, *, host: str, port: int) -> list[str]:
    """`mlflow server` for the UI, with one worker (the default starts many processes). The
    backend store goes in the environment (``server_environment``), not on the command line,
    where any user of the machine could read its password."""
    if backend_uri.startswith(("http://", "https://")):
        raise TrackingError(f"{mask_uri(backend_uri)} is already a server: open it in a browser instead of running ui")
    import sys

    sibling = Path(sys.executable).with_name("mlflow")
    # The mlflow of this interpreter; `python -m mlflow` where its script is not installed beside it.
    mlflow = [str(sibling)] if sibling.is_file() else [sys.executable, "-m", "mlflow"]
    return [*mlflow, "server", "--host", host, "--port", str(port), "--workers", "1"]


def server_environment(backend_uri: str) -> dict[str, str]:
    # MLflow 3's job runner adds a dozen processes and ~1.5 GB that a UI does not need.
    return {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_BACKEND_STORE_URI": backend_uri}
