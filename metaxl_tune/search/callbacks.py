"""Driver-side Tune callbacks: MLflow tracking of every trial, and live progress lines."""

from __future__ import annotations

import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Callable

from ray import tune

from metaxl_tune.config import RunConfig
from metaxl_tune.search.pruning import stopped_because, was_pruned
from metaxl_tune.search.tracking_queue import TrackingQueue
from metaxl_tune.terminal import display_value, terminal_width
from metaxl_tune.tracking import OUTCOME_TAG, Tracker

# Keys of a trial's result that are per-epoch metrics (Tune adds many bookkeeping keys).
EPOCH_METRICS = (
    "dev_f1", "test_f1", "train_loss", "meta_loss", "epoch_seconds", "best_dev_f1", "best_test_f1", "best_epoch",
    "wall_seconds", "device_seconds",
)
PLACEMENT_TAGS = ("node_id", "hostname", "gpu_ids", "cuda_visible_devices", "device_type", "resumed_from_epoch")
STOP_TAGS = ("stop_reason", "stop_message")
OFFLINE_GRACE_SECONDS = 20.0
"""At the end of a search, how long to keep trying an unreachable tracking server."""


def outcome(result: dict[str, Any] | None, error: bool) -> tuple[str, str]:
    """(MLflow status, outcome tag): FINISHED; KILLED for pruned; FAILED for errors and for
    trials that stopped themselves (outcome ``diverged`` or ``out_of_memory``)."""
    if error:
        return "FAILED", "failed"
    reason = stopped_because(result)
    if reason is not None:
        return "FAILED", reason
    if was_pruned(result):
        return "KILLED", "pruned"
    return "FINISHED", "completed"


def epoch_metrics(result: dict[str, Any]) -> dict[str, float]:
    return {key: result[key] for key in EPOCH_METRICS if result.get(key) is not None}


def placement_tags(result: dict[str, Any]) -> dict[str, str]:
    return {f"metaxl.{key}": str(result[key]) for key in PLACEMENT_TAGS if key in result}


def stop_tags(result: dict[str, Any]) -> dict[str, str]:
    return {f"metaxl.{key}": str(result[key]) for key in STOP_TAGS if key in result}


class MlflowTrialCallback(tune.Callback):
    """Nested MLflow run per trial: params, per-epoch metrics, placement tags, config and best
    checkpoint as artifacts, and a final status that is never left RUNNING.

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
    ):
        self.tracker = tracker
        self.parent_id = parent_id
        self.to_config = to_config
        self.trial_tags = trial_tags
        self.sync_hint = sync_hint
        self.runs: dict[str, str] = {}
        """Trial id -> MLflow run id; read and written on the queue's thread only."""
        self.nodes: dict[str, Any] = {}
        self._queue: TrackingQueue | None = None

    def __getstate__(self) -> dict[str, Any]:
        # Tune snapshots its callbacks; the queue (a thread) is rebuilt on demand.
        return {**self.__dict__, "_queue": None}

    @property
    def queue(self) -> TrackingQueue:
        if self._queue is None:
            self._queue = TrackingQueue(self.tracker.tracking_uri, self.tracker.reachable, sync_hint=self.sync_hint)
        return self._queue

    def _run_id(self, trial_id: str, trial_config: dict) -> str:
        if trial_id not in self.runs:
            config = self.to_config(trial_config)
            tags = self.trial_tags(trial_config) if self.trial_tags is not None else {}
            self.runs[trial_id] = self.tracker.trial_run(
                self.parent_id, trial_id, config.to_dict(), config.to_yaml(), tags
            )
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
        metrics, step = epoch_metrics(result), int(result["epoch"])
        # Placement is tagged on the first result and again when a retry moves the trial.
        tags = {}
        if self.nodes.get(trial_id) != result.get("node_id"):
            self.nodes[trial_id] = result.get("node_id")
            tags = placement_tags(result)
        self.queue.submit(
            lambda: self.tracker.log_metrics(self._run_id(trial_id, trial_config), metrics, step=step, tags=tags)
        )

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        trial_id, trial_config = trial.trial_id, dict(trial.config)
        tags = {"metaxl.retries": str(trial.run_metadata.num_failures)}
        self.queue.submit(lambda: self.tracker.set_tags(self._run_id(trial_id, trial_config), tags))

    def _finish(self, trial, error: bool) -> None:
        trial_id, trial_config = trial.trial_id, dict(trial.config)
        status, outcome_tag = outcome(trial.last_result, error)
        best = trial.run_metadata.checkpoint_manager.best_checkpoint_result
        checkpoint = best.checkpoint if best is not None else trial.checkpoint
        keep_checkpoint = checkpoint is not None and status != "FAILED"

        def finish() -> None:
            run_id = self._run_id(trial_id, trial_config)
            if keep_checkpoint:
                with checkpoint.as_directory() as directory:
                    self.tracker.log_artifacts(run_id, Path(directory), "checkpoint")
            self.tracker.set_tags(run_id, {OUTCOME_TAG: outcome_tag})
            self.tracker.end_run(run_id, status)

        self.queue.submit(finish)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._finish(trial, error=False)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._finish(trial, error=True)

    def on_experiment_end(self, trials, **info) -> None:
        if self._queue is not None:
            self._queue.close(offline_grace=OFFLINE_GRACE_SECONDS)


def progress_line(running: int, counts: dict[str, int], total: int, best: float | None) -> str:
    """``[search] 2 running, 3 finished, 1 pruned, 0 failed of 6 | best 28.43``: fits 80 columns."""
    line = (f"[search] {running} running, {counts['completed']} finished, {counts['pruned']} pruned, "
            f"{counts['failed']} failed of {total}")
    return line if best is None else f"{line} | best {best:.2f}"


def best_lines(metric: str, value: float, trial_id: str, params: dict[str, Any], *, width: int = 80) -> list[str]:
    """The new best trial's searched values, wrapped to ``width`` (numbers short, placements as labels)."""
    shown = " ".join(f"{key}={display_value(value_)}" for key, value_ in params.items())
    head = f"[search] new best {metric} {value:.2f} (trial {trial_id})"
    return textwrap.wrap(f"{head}: {shown}" if shown else head, width=width, subsequent_indent=" " * 9,
                         break_long_words=False, break_on_hyphens=False)


class ProgressCallback(tune.Callback):
    """A status line whenever a trial reports or ends (counts and the best value so far), and the
    searched values of each new best trial; every line fits an 80-column terminal."""

    def __init__(self, metric: str, mode: str, total: int, searched: tuple[str, ...]):
        self.metric = metric
        self.searched = searched
        self.mode = mode
        self.total = total
        self.outcomes: dict[str, str] = {}
        self.best: tuple[float, str, dict] | None = None
        self._last_print = 0.0

    def _better(self, value: float) -> bool:
        if self.best is None:
            return True
        return value > self.best[0] if self.mode == "max" else value < self.best[0]

    def _print(self, trials, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_print < 2.0:
            return
        self._last_print = now
        running = sum(1 for trial in trials if trial.status == "RUNNING")
        counts = {name: sum(1 for outcome in self.outcomes.values() if outcome == name) for name in ("completed", "pruned", "failed")}
        best = self.best[0] if self.best is not None else None
        print(progress_line(running, counts, self.total, best), file=sys.stdout, flush=True)

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
        if reason is not None:
            print(f"[search] trial {trial.trial_id} stopped: {reason} ({result.get('stop_message', '')}); "
                  "the search goes on", file=sys.stdout, flush=True)
        self.outcomes[trial.trial_id] = "failed" if reason is not None else outcome(result, error=False)[1]
        self._print(trials, force=True)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self.outcomes[trial.trial_id] = "failed"
        self._print(trials, force=True)
