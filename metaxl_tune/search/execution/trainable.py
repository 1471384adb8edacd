"""The core trainer as a Ray Tune function trainable.

Each epoch is reported; the epochs the checkpoint policy picks (``checkpoint_every``, see
``metaxl_tune/train/checkpoint_policy.py``) carry a resume checkpoint. On a retry (a lost node, a
crashed worker) the trial continues from the last reported checkpoint instead of epoch 1, or
from the one before it when that one is damaged. A trial whose loss
diverges or that runs out of memory ends with a ``stop_reason`` result instead of an error:
retrying the same config would fail the same way. Arguments arrive through
``tune.with_parameters`` and are small (config dicts and paths): data is read from the
on-disk encoding cache.
"""

from __future__ import annotations

import gc
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import ray
from ray import tune

from metaxl_tune.train.checkpoint import CheckpointError
from metaxl_tune.config import RunConfig
from metaxl_tune.train.prepare import size_params
from metaxl_tune.search.faults import persistence
from metaxl_tune.search.space.trial_configs import TrialConfigs  # noqa: F401 - re-exported, its old home
# The key from train/, not from search/space/pruning: the trial's worker imports neither Optuna
# nor MLflow (the pruner's imports), a second less before each search's first result.
from metaxl_tune.train.outcome import STOP_REASON, stop_reason


PROGRESS_FILE = "trial_progress.json"
STOP_MESSAGE = "stop_message"


def placement_info() -> dict[str, Any]:
    """Where this trial runs: reported once so MLflow can tag the trial's node and GPUs."""
    context = ray.get_runtime_context()
    return {
        "node_id": context.get_node_id(),
        "hostname": socket.gethostname(),
        "gpu_ids": ",".join(str(gpu) for gpu in ray.get_gpu_ids()),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
    }


def train_trial(
    sampled: dict[str, Any], *, configs: TrialConfigs, cache_dir: str, cpus: float, gpus: float,
    storage_retry_s: float = persistence.DEFAULT_RETRY_S,
) -> None:
    # torch loads here, in the trial's worker: the driver imports this module to hand the
    # function to Tune, and never needs torch (about 2 s of every search's start).
    import torch

    started_at = time.time()
    # Ray sets OMP_NUM_THREADS for workers, but torch's intra-op pool is sized at import:
    # oversubscribed cores make every trial on a node crawl.
    torch.set_num_threads(max(1, int(cpus)))
    config = configs(sampled)
    where = {**placement_info(), "trial_started_at": started_at}
    try:
        _train(config, where, started_at, cache_dir=cache_dir, cpus=cpus, gpus=gpus, storage_retry_s=storage_retry_s)
        return
    except Exception as error:  # noqa: BLE001 - classified just below, anything else re-raised
        reason = stop_reason(error)
        if reason is None:
            raise
        message = f"{type(error).__name__}: {error}".splitlines()[0][:300]
    # Outside the except block: the traceback no longer pins the failed attempt's tensors, so
    # a reused worker starts its next trial with the memory freed.
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    tune.report({STOP_REASON: reason, STOP_MESSAGE: message, "epochs_total": config.total_epochs, **where})


def _train(
    config: RunConfig, where: dict[str, Any], started_at: float, *, cache_dir: str, cpus: float, gpus: float,
    storage_retry_s: float,
) -> None:
    # The trainer (the model classes, the bilevel step) loads in the trial's worker, not in the
    # driver that hands this function to Tune: seconds of every search's start.
    from metaxl_tune.train.trainer import Run

    trial_dir = Path(tune.get_context().get_trial_dir())
    checkpoint = tune.get_checkpoint()
    run = Run(config, trial_dir / "run", cache_dir=Path(cache_dir), progress=False, save_model=False)
    # Wall-clock mark for overhead accounting: ready to train (data and model built). The data
    # sizes actually used ride along; the driver logs them as MLflow params (``used.*``).
    where = {**where, "training_started_at": time.time(), **size_params(run.data.sizes())}
    device_type = run.device.type
    # Cost: the devices this trial holds, for as long as it has held them (restarts included).
    held = gpus if device_type == "cuda" else cpus

    def report(entry, checkpoint_dir: Path | None) -> None:
        attempt = time.time() - started_at
        wall = attempt + previous_wall
        # wall_seconds counts the time behind the checkpoint resumed from; what earlier attempts
        # spent past it is added by the driver from attempt_seconds (restarts.py).
        metrics = {
            **entry.metrics(), "epochs_total": config.total_epochs, **where, "device_type": device_type,
            "wall_seconds": wall, "device_seconds": wall * held, "resumed_from_epoch": resumed_from,
            "attempt_seconds": attempt,
        }
        # checkpoint_dir is None on epochs the checkpoint policy skips: metrics only.
        if checkpoint_dir is not None:
            (checkpoint_dir / PROGRESS_FILE).write_text(json.dumps({"wall_seconds": wall, "epoch": entry.epoch}))
        # A storage fault is waited out (persistence.py), not turned into a trial failure.
        persistence.report(metrics, checkpoint_dir, retry_s=storage_retry_s)

    # Resume checkpoints (as config.checkpoint_every decides) are written to a scratch folder;
    # tune.report copies each into the trial's storage, so the storage holds only the
    # checkpoints Tune keeps. Each carries the best-dev weights so far (checkpoint.BEST_FILE).
    previous_wall, resumed_from = 0.0, 0
    with tempfile.TemporaryDirectory() as staging:
        if checkpoint is None:
            run.fit(on_epoch=report, checkpoint_dir=Path(staging))
            return
        candidates = resume_candidates(checkpoint)
        for index, candidate in enumerate(candidates):
            with candidate.as_directory() as restored:
                progress = _progress(Path(restored))
                previous_wall, resumed_from = progress["wall_seconds"], progress["epoch"]
                try:
                    run.fit(on_epoch=report, resume_from=Path(restored), checkpoint_dir=Path(staging))
                    return
                except CheckpointError as error:
                    # Nothing was trained or written yet: fall back to the previous kept one.
                    advice = (f"the trial resumes from the previous kept checkpoint {candidates[index + 1].path}"
                              if index + 1 < len(candidates) else
                              "no earlier checkpoint is kept: the trial starts again from epoch 1")
                    print(f"[trial] {error.advise(advice)}", file=sys.stderr, flush=True)
        previous_wall, resumed_from = 0.0, 0
        run.fit(on_epoch=report, checkpoint_dir=Path(staging))


def resume_candidates(latest: tune.Checkpoint) -> list[tune.Checkpoint]:
    """The checkpoint Tune restores, then the trial's other kept ones, newest first (with
    ``--keep-checkpoints`` > 1 a damaged latest one falls back to the one before it)."""
    candidates = [latest]
    local = Path(latest.path)
    if local.parent.is_dir() and type(latest.filesystem).__name__ == "LocalFileSystem":
        for sibling in sorted(local.parent.glob("checkpoint_*"), reverse=True):
            if sibling.is_dir() and sibling.name < local.name:
                candidates.append(tune.Checkpoint.from_directory(str(sibling)))
    return candidates


def _progress(checkpoint_dir: Path) -> dict[str, float]:
    """Wall time spent and the epoch reached before a restart, kept next to the checkpoint."""
    marker = checkpoint_dir / PROGRESS_FILE
    return json.loads(marker.read_text()) if marker.is_file() else {"wall_seconds": 0.0, "epoch": 0}
