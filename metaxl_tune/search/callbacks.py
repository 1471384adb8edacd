"""Driver-side Tune callbacks: MLflow tracking of every trial, and live progress lines."""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

from ray import tune

from metaxl_tune.config import RunConfig
from metaxl_tune.search.pruning import was_pruned
from metaxl_tune.tracking import OUTCOME_TAG, Tracker

# Keys of a trial's result that are per-epoch metrics (Tune adds many bookkeeping keys).
EPOCH_METRICS = (
    "dev_f1", "test_f1", "train_loss", "meta_loss", "epoch_seconds", "best_dev_f1", "best_test_f1", "best_epoch",
    "wall_seconds", "device_seconds",
)
PLACEMENT_TAGS = ("node_id", "hostname", "gpu_ids", "cuda_visible_devices", "device_type")


def _outcome(result: dict[str, Any] | None, error: bool) -> tuple[str, str]:
    """(MLflow status, outcome tag): FINISHED, KILLED for pruned/stopped, FAILED for errors."""
    if error:
        return "FAILED", "failed"
    if was_pruned(result):
        return "KILLED", "pruned"
    return "FINISHED", "completed"


class MlflowTrialCallback(tune.Callback):
    """Nested MLflow run per trial: params, per-epoch metrics, placement tags, config and best
    checkpoint as artifacts, and a final status that is never left RUNNING."""

    def __init__(
        self,
        tracker: Tracker,
        parent_id: str,
        to_config: Callable[[dict], RunConfig],
        trial_tags: Callable[[dict], dict[str, str]] | None = None,
    ):
        self.tracker = tracker
        self.parent_id = parent_id
        self.to_config = to_config
        self.trial_tags = trial_tags
        self.runs: dict[str, str] = {}
        self.nodes: dict[str, str] = {}
        self._warned = False

    def _safely(self, action: Callable[[], Any]) -> Any:
        # A tracking hiccup must not stop a search that is training fine.
        try:
            return action()
        except Exception as error:  # noqa: BLE001 - MLflow raises many unrelated types
            if not self._warned:
                warnings.warn(f"MLflow logging failed ({error}); training continues", stacklevel=2)
                self._warned = True
            return None

    def _run_of(self, trial) -> str | None:
        if trial.trial_id not in self.runs:
            config = self.to_config(trial.config)
            tags = self.trial_tags(trial.config) if self.trial_tags is not None else {}
            run_id = self._safely(
                lambda: self.tracker.trial_run(self.parent_id, trial.trial_id, config.to_dict(), config.to_yaml(), tags)
            )
            if run_id is None:
                return None
            self.runs[trial.trial_id] = run_id
        return self.runs[trial.trial_id]

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self._run_of(trial)

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        run_id = self._run_of(trial)
        if run_id is None:
            return
        metrics = {key: result[key] for key in EPOCH_METRICS if result.get(key) is not None}
        self._safely(lambda: self.tracker.log_metrics(run_id, metrics, step=int(result["epoch"])))
        # Placement is tagged on the first result and again if the trial moves (a retry elsewhere).
        if self.nodes.get(trial.trial_id) != result.get("node_id"):
            self.nodes[trial.trial_id] = result.get("node_id")
            tags = {f"metaxl.{key}": result[key] for key in PLACEMENT_TAGS if key in result}
            self._safely(lambda: self.tracker.set_tags(run_id, tags))

    def _finish(self, trial, error: bool) -> None:
        run_id = self._run_of(trial)
        if run_id is None:
            return
        status, outcome = _outcome(trial.last_result, error)
        best = trial.run_metadata.checkpoint_manager.best_checkpoint_result
        checkpoint = best.checkpoint if best is not None else trial.checkpoint
        if checkpoint is not None and not error:
            with checkpoint.as_directory() as directory:
                self._safely(lambda: self.tracker.log_artifacts(run_id, Path(directory), "checkpoint"))
        self._safely(lambda: self.tracker.set_tags(run_id, {OUTCOME_TAG: outcome}))
        self._safely(lambda: self.tracker.end_run(run_id, status))

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._finish(trial, error=False)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._finish(trial, error=True)


class ProgressCallback(tune.Callback):
    """One status line whenever a trial reports or ends: counts and the best trial so far."""

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
        best = ""
        if self.best is not None:
            value, trial_id, params = self.best
            shown = ", ".join(f"{key}={value_:.3g}" if isinstance(value_, float) else f"{key}={value_}" for key, value_ in params.items())
            best = f" | best {self.metric} {value:.2f} ({trial_id}: {shown})"
        print(
            f"[search] {running} running, {counts['completed']} finished, {counts['pruned']} pruned, "
            f"{counts['failed']} failed of {self.total}{best}",
            file=sys.stdout,
            flush=True,
        )

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        value = result.get(self.metric)
        if value is not None and self._better(value):
            self.best = (value, trial.trial_id, {k: v for k, v in trial.config.items() if k in self.searched})
        self._print(trials)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self.outcomes[trial.trial_id] = _outcome(trial.last_result, error=False)[1]
        self._print(trials, force=True)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self.outcomes[trial.trial_id] = "failed"
        self._print(trials, force=True)
