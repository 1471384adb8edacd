"""Driver-side Tune callbacks: MLflow tracking of every trial, and live progress lines."""

from __future__ import annotations

import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Callable

from ray import tune

from metaxl_tune.config import RunConfig
from metaxl_tune.search.faults.ending import ERROR_TAG
from metaxl_tune.search.faults.fault_lines import failed_line, failure_reason, resumed_line, retry_line
from metaxl_tune.search.space.pruning import stopped_because
from metaxl_tune.search.records.artifacts import DRIVER_SAID, ArtifactUploads
from metaxl_tune.search.records.restarts import SPENT_KEYS, TrialLedger, log_result
from metaxl_tune.search.records.tracking_queue import TrackingQueue, say_tracking
from metaxl_tune.search.records.trial_record import (
    config_upload, epoch_metrics, error_tag, outcome, placement_tags, stop_tags, trial_params, used_size_params,
    weights_upload,
)
from metaxl_tune.common.terminal import display_value, terminal_width
from metaxl_tune.results.tracking import OUTCOME_TAG, Tracker

OFFLINE_GRACE_SECONDS = 20.0
"""At the end of a search, how long to keep trying an unreachable tracking server."""


class MlflowTrialCallback(tune.Callback):
    """Nested MLflow run per trial: params, per-epoch metrics, placement tags, config and the
    best-dev weights as artifacts, and a final status that is never left RUNNING.

    Every MLflow call goes through a TrackingQueue: Tune's loop never waits on the server,
    and a server outage holds the calls instead of losing them.
    """

    def __init__(
        self,
        tracker: Tracker,
        parent_id: str,
        to_config: Callable[[dict], RunConfig],
        trial_tags: Callable[[dict], dict[str, str]] | None = None,
        *,
        sync_hint: str,
        kept_in: str = "the search's storage",
    ):
        self.tracker = tracker
        self.parent_id = parent_id
        self.to_config = to_config
        self.trial_tags = trial_tags
        self.sync_hint = sync_hint
        self.kept_in = kept_in
        """Where the files MLflow does not take stay (the search's storage), for the warning."""
        self.configured: set[str] = set()
        """Trials whose config.yaml this driver uploaded (or tried to); queue thread only."""
        self.runs: dict[str, str] = {}
        """Trial id -> MLflow run id; read and written on the queue's thread only."""
        self.placed: dict[str, Any] = {}
        """Trial id -> (node, epoch it resumed from) last tagged."""
        self.reopened: set[str] = set()
        """Trials whose run this driver has reopened (a resumed search reopens each once)."""
        self.sized: set[str] = set()
        """Trials whose used data sizes were logged as params."""
        self.ledgers: dict[str, TrialLedger] = {}
        """Trial id -> its epochs in MLflow and seconds spent (restarts.py); queue thread only."""
        self._queue: TrackingQueue | None = None

    def __getstate__(self) -> dict[str, Any]:
        # Tune snapshots its callbacks; the queue (a thread) is rebuilt on demand, and a
        # restored search reopens its runs (an interrupted search left them KILLED).
        return {**self.__dict__, "_queue": None, "reopened": set(), "configured": set()}

    @property
    def queue(self) -> TrackingQueue:
        if self._queue is None:
            self._queue = TrackingQueue(self.tracker.tracking_uri, self.tracker.reachable, sync_hint=self.sync_hint)
        return self._queue

    @property
    def uploads(self) -> ArtifactUploads:
        # getattr: a callback pickled (in Tune's snapshot) before it had the attribute.
        return ArtifactUploads(self.tracker, kept_in=getattr(self, "kept_in", "the search's storage"),
                               sync_hint=self.sync_hint, say=say_tracking, said=DRIVER_SAID)

    def _run_id(self, trial_id: str, trial_config: dict) -> str:
        if trial_id not in self.reopened:
            self.reopened.add(trial_id)
            self.runs.pop(trial_id, None)  # found again by its tags, and set RUNNING
            # A restored driver's snapshot may lag behind MLflow: read the run again.
            self.__dict__.setdefault("ledgers", {}).pop(trial_id, None)
        if trial_id not in self.runs:
            config = self.to_config(trial_config)
            tags = self.trial_tags(trial_config) if self.trial_tags is not None else {}
            self.runs[trial_id] = self.tracker.trial_run(self.parent_id, trial_id, trial_params(config), tags)
        configured = self.__dict__.setdefault("configured", set())
        if trial_id not in configured:
            # Once per trial and driver (a resumed search writes the same file again): a run made
            # just before the server went away, or whose upload failed, gets it now or from sync.
            config = self.to_config(trial_config)
            self.uploads.upload(*config_upload(self.tracker, self.runs[trial_id], config, trial_id))
            configured.add(trial_id)
        return self.runs[trial_id]

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        trial_id, trial_config = trial.trial_id, dict(trial.config)
        self.queue.submit(lambda: self._run_id(trial_id, trial_config))

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        trial_id, trial_config = trial.trial_id, dict(trial.config)
        if stopped_because(result) is not None:
            tags = stop_tags(result)
            self.queue.submit(lambda: self.tracker.set_tags(self._run_id(trial_id, trial_config), tags))
            return
        metrics = epoch_metrics(result)
        # Placement is tagged on the first result and again after every retry or resume: the
        # trial may have moved, and it restarted from another epoch even on the same node.
        tags = {}
        placed = (result.get("node_id"), result.get("resumed_from_epoch"))
        if self.placed.get(trial_id) != placed:
            self.placed[trial_id] = placed
            tags = placement_tags(result)
        timing = {key: result[key] for key in SPENT_KEYS if key in result}
        self.queue.submit(lambda: self._log_epoch(trial_id, trial_config, timing, metrics, tags))
        sizes = used_size_params(result)
        if sizes and trial_id not in self.__dict__.setdefault("sized", set()):
            # Params are write-once in MLflow: the sizes go in with the first result only.
            self.sized.add(trial_id)
            self.queue.submit(lambda: self.tracker.log_params(self._run_id(trial_id, trial_config), sizes))

    def _log_epoch(self, trial_id: str, trial_config: dict, result: dict, metrics: dict, tags: dict) -> None:
        # A restarted trial's redone epochs are not logged twice, and its cost includes the lost work.
        run_id = self._run_id(trial_id, trial_config)
        ledgers = self.__dict__.setdefault("ledgers", {})
        if trial_id not in ledgers:
            ledgers[trial_id] = TrialLedger.from_run(self.tracker.client, run_id)
        log_result(self.tracker, run_id, ledgers[trial_id], result, metrics, tags)

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        trial_id, trial_config = trial.trial_id, dict(trial.config)
        tags = {"metaxl.retries": str(trial.run_metadata.num_failures)}
        self.queue.submit(lambda: self.tracker.set_tags(self._run_id(trial_id, trial_config), tags))

    def _finish(self, trial, error: bool) -> None:
        trial_id, trial_config = trial.trial_id, dict(trial.config)
        status, outcome_tag = outcome(trial.last_result, error)
        end_tags = {OUTCOME_TAG: outcome_tag, **({ERROR_TAG: error_tag(trial.error_file)} if error else {})}
        # The newest checkpoint carries the best-dev weights (checkpoint.BEST_FILE): upload
        # those once, unless the trial's config says --no-model-artifacts.
        checkpoint = trial.checkpoint
        keep_weights = checkpoint is not None and status != "FAILED" and self.to_config(trial_config).model_artifacts

        def finish() -> None:
            run_id = self._run_id(trial_id, trial_config)
            if keep_weights:
                # A store that does not take the weights leaves the outcome as it is (artifacts.py).
                with checkpoint.as_directory() as directory:
                    self.uploads.upload(*weights_upload(self.tracker, run_id, Path(directory), trial_id))
            self.tracker.set_tags(run_id, end_tags)
            self.tracker.end_run(run_id, status)

        self.queue.submit(finish)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._finish(trial, error=False)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._finish(trial, error=True)

    def on_experiment_end(self, trials, **info) -> None:
        if self._queue is not None:
            self._queue.close(offline_grace=OFFLINE_GRACE_SECONDS)


def ended_outcome(result: dict[str, Any] | None, error: bool = False) -> str:
    """completed, pruned or failed: the progress line's name for how a trial ended."""
    if error or stopped_because(result) is not None:
        return "failed"
    return outcome(result, error=False)[1]


def trial_counts(trials: list, ending: Any = None) -> tuple[int, dict[str, int]]:
    """(running, ended trials by outcome), from Tune's own trial statuses, so they add up to the
    trials Tune has, restored ones included. ``ending``: the trial whose end is being announced;
    Tune calls ``on_trial_complete`` before it marks the trial TERMINATED, so it counts as ended
    (counted as running as well, a line read ``1 running, 2 finished, 1 pruned, 0 failed of 3``)."""
    running, counts = 0, {"completed": 0, "pruned": 0, "failed": 0}
    for trial in trials:
        status = trial.status
        if ending is not None and trial.trial_id == ending.trial_id and status not in ("TERMINATED", "ERROR"):
            status = "TERMINATED"
        if status == "RUNNING":
            running += 1
        elif status == "TERMINATED":
            # The stored result: Trial.last_result would ask a just-started actor for its defaults.
            counts[ended_outcome(trial.run_metadata.last_result)] += 1
        elif status == "ERROR":
            counts["failed"] += 1
    return running, counts


def progress_line(running: int, counts: dict[str, int], total: int, best: tuple[float, int] | None) -> str:
    """``[search] 2 running, 3 finished, 1 pruned, 0 failed of 6 | best 28.43 (2 seeds)``: the
    incumbent config's mean over its completed seeds (``best``: mean, seeds); fits 80 columns
    (``n=2`` for the seeds where the words would not)."""
    line = (f"[search] {running} running, {counts['completed']} finished, {counts['pruned']} pruned, "
            f"{counts['failed']} failed of {total}")
    if best is None:
        return line
    mean, seeds = best
    full = f"{line} | best {mean:.2f} ({seeds} seed{'s' if seeds != 1 else ''})"
    return full if len(full) <= 80 else f"{line} | best {mean:.2f} n={seeds}"


def best_lines(metric: str, value: float, trial_id: str, params: dict[str, Any], *, width: int = 80) -> list[str]:
    """The new best trial's searched values, wrapped to ``width`` (numbers short, placements as labels)."""
    shown = " ".join(f"{key}={display_value(value_)}" for key, value_ in params.items())
    head = f"[search] new best {metric} {value:.2f} (trial {trial_id})"
    return textwrap.wrap(f"{head}: {shown}" if shown else head, width=width, subsequent_indent=" " * 9,
                         break_long_words=False, break_on_hyphens=False)


class ProgressCallback(tune.Callback):
    """A status line whenever a trial reports or ends (counts, and the incumbent: the config with
    the best mean among those with the most completed seeds, as ``best`` ranks them, never one
    trial's score), and the searched values of each trial that reports a new best value (a live
    event of one trial, marked as such); every line fits an 80-column terminal."""

    def __init__(self, metric: str, mode: str, total: int, searched: tuple[str, ...], *, seed_cap: int | None = None):
        self.metric = metric
        self.searched = searched
        self.mode = mode
        self.total = total
        self.seed_cap = seed_cap
        """Seeds counted per config when the incumbent is chosen (racing.seed_cap)."""
        self.completed: dict[str, list[float]] = {}
        """Config id -> the final value of each of its completed trials (its seeds)."""
        self.best: tuple[float, str, dict] | None = None
        self._last_print = 0.0
        self.retrying: set[str] = set()
        """Trials whose restart after a failure was announced (on_trial_recover)."""

    def __getstate__(self) -> dict[str, Any]:
        # Tune snapshots its callbacks; a driver started with --resume announces its restarts itself.
        return {**self.__dict__, "retrying": set()}

    @staticmethod
    def _say(line: str) -> None:
        print(line, file=sys.stdout, flush=True)

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        if trial.trial_id in self.__dict__.setdefault("retrying", set()):
            self.retrying.discard(trial.trial_id)
            return
        line = resumed_line(trial)
        if line is not None:
            self._say(line)

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        self.__dict__.setdefault("retrying", set()).add(trial.trial_id)
        self._say(retry_line(trial, failure_reason(trial)))

    def _better(self, value: float) -> bool:
        if self.best is None:
            return True
        return value > self.best[0] if self.mode == "max" else value < self.best[0]

    def _print(self, trials, force: bool = False, ending: Any = None) -> None:
        now = time.monotonic()
        if not force and now - self._last_print < 2.0:
            return
        self._last_print = now
        running, counts = trial_counts(trials, ending)
        print(progress_line(running, counts, self.total, self.incumbent()), file=sys.stdout, flush=True)

    def incumbent(self) -> tuple[float, int] | None:
        """(mean, seeds) of the incumbent config so far; None before any trial completed, and in
        an ablation, which searches nothing."""
        from metaxl_tune.search.space.racing import incumbent_of

        completed = self.__dict__.get("completed") or {}  # a callback pickled before seeds counted has none
        if not self.searched or not completed:
            return None
        summary = {identity: (sum(values) / len(values), len(values)) for identity, values in completed.items()}
        identity = incumbent_of(summary, self.mode, self.__dict__.get("seed_cap"))
        return summary[identity]

    def _count_seed(self, trial: Any) -> None:
        from metaxl_tune.config.identity import config_id

        result = trial.last_result or {}
        if ended_outcome(result) != "completed" or result.get(self.metric) is None:
            return  # a pruned trial is no seed (results/config_ranking.py ranks the same way)
        identity = config_id({key: value for key, value in trial.config.items() if key in self.searched})
        self.__dict__.setdefault("completed", {}).setdefault(identity, []).append(float(result[self.metric]))

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        value = result.get(self.metric)
        if value is not None and self._better(value):
            changed = self.best is None or self.best[1] != trial.trial_id
            self.best = (value, trial.trial_id, {k: v for k, v in trial.config.items() if k in self.searched})
            if changed and self.searched:  # an ablation searches nothing: no "best" to announce
                for line in best_lines(self.metric, *self.best, width=min(terminal_width(), 80)):
                    print(line, file=sys.stdout, flush=True)
        self._print(trials)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        result = trial.last_result
        reason = stopped_because(result)
        if self.searched:
            self._count_seed(trial)
        if reason is not None:
            print(f"[search] trial {trial.trial_id} stopped: {reason} ({result.get('stop_message', '')}); "
                  "the search goes on", file=sys.stdout, flush=True)
        self._print(trials, force=True, ending=trial)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._say(failed_line(trial, failure_reason(trial)))
        self._print(trials, force=True, ending=trial)
