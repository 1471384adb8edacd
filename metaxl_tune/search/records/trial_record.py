"""What a trial's MLflow run holds, built from Tune's results: params, per-epoch metrics, tags,
the outcome, and its files. Shared by the driver's callback (callbacks.py) and ``sync``, which
rebuilds the same record from Tune's files; no Ray here, so ``sync`` does not load it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from metaxl_tune.config import RunConfig, ignored_by_method
from metaxl_tune.search.faults.ending import error_reason
from metaxl_tune.search.space.pruning import stopped_because, was_pruned
from metaxl_tune.search.records.artifacts import files_size
from metaxl_tune.results.tracking import BEST_WEIGHTS_FILE, Tracker

# Keys of a trial's result that are per-epoch metrics (Tune adds many bookkeeping keys).
EPOCH_METRICS = (
    "dev_f1", "test_f1", "train_loss", "meta_loss", "epoch_seconds", "best_dev_f1", "best_test_f1", "best_epoch",
    "wall_seconds", "device_seconds", "peak_memory_mib",
)
PLACEMENT_TAGS = ("node_id", "hostname", "gpu_ids", "cuda_visible_devices", "device_type", "resumed_from_epoch")
STOP_TAGS = ("stop_reason", "stop_message")


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


# Multi-source metrics (outcome.EpochResult.sources): one per source language.
SOURCE_METRIC_PREFIXES = ("source_examples/", "source_steps/", "source_weight/")
USED_SIZE_PREFIX = "used."
"""Result keys holding the data sizes a trial actually used; logged once as MLflow params."""


TUNE_ERROR_FILE = "error.txt"
"""Tune's record of a trial's failures, in the trial's folder (Trial.error_file)."""


def error_tag(path: str | Path | None) -> str:
    """The failed trial's ``metaxl.error`` tag: the last error line of its error file."""
    try:
        return error_reason(Path(path).read_text(errors="replace")) if path else "error"
    except OSError:
        return "error"


def epoch_metrics(result: dict[str, Any]) -> dict[str, float]:
    metrics = {key: result[key] for key in EPOCH_METRICS if result.get(key) is not None}
    metrics.update({key: value for key, value in result.items() if key.startswith(SOURCE_METRIC_PREFIXES)})
    return metrics


def trial_params(config: RunConfig) -> dict[str, Any]:
    """A trial's MLflow params: its resolved config, and the fields its method never reads."""
    params = config.to_dict()
    ignored = ignored_by_method(config.method, params)
    if ignored:
        # The trial's method never reads these (config.METHODS_USING): say so next to them.
        params["ignored_by_method"] = ",".join(ignored)
    return params


def weights_upload(tracker: Tracker, run_id: str, checkpoint_dir: Path, trial_id: str) -> tuple[str, int, Callable]:
    """(what, size, action) of the upload of a trial's best-dev weights, for ArtifactUploads."""
    return (f"the best weights of trial {trial_id}", files_size([checkpoint_dir / BEST_WEIGHTS_FILE]),
            lambda: tracker.log_best_weights(run_id, checkpoint_dir))


def config_upload(tracker: Tracker, run_id: str, config: RunConfig, trial_id: str) -> tuple[str, int, Callable]:
    text = config.to_yaml()
    return (f"the config.yaml of trial {trial_id}", len(text.encode()), lambda: tracker.log_config(run_id, text))


def used_size_params(result: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in result.items() if key.startswith(USED_SIZE_PREFIX)}


def placement_tags(result: dict[str, Any]) -> dict[str, str]:
    return {f"metaxl.{key}": str(result[key]) for key in PLACEMENT_TAGS if key in result}


def stop_tags(result: dict[str, Any]) -> dict[str, str]:
    return {f"metaxl.{key}": str(result[key]) for key in STOP_TAGS if key in result}
