"""The core trainer as a Ray Tune function trainable.

Each epoch is reported with its checkpoint; on a retry the trial continues from the last
reported checkpoint instead of epoch 1. Arguments arrive through ``tune.with_parameters``
and are small (config dicts and paths): data is read from the on-disk encoding cache.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from metaxl_tune.config import RunConfig, build_config
from metaxl_tune.search.space import SearchSpace
from metaxl_tune.trainer import Run


WALL_FILE = "wall_seconds.txt"


class TrialConfigs:
    """Turns a trial's sampled values into its RunConfig (picklable; shipped to every trial)."""

    def __init__(self, base: RunConfig, space: SearchSpace):
        self.base = base.to_dict()
        self.space = space

    def __call__(self, sampled: dict[str, Any]) -> RunConfig:
        return self.space.to_run_config(build_config(self.base), sampled)


def placement_info() -> dict[str, Any]:
    """Where this trial runs: reported once so MLflow can tag the trial's node and GPUs."""
    context = ray.get_runtime_context()
    return {
        "node_id": context.get_node_id(),
        "hostname": socket.gethostname(),
        "gpu_ids": ",".join(str(gpu) for gpu in ray.get_gpu_ids()),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
    }


def train_trial(sampled: dict[str, Any], *, configs: TrialConfigs, cache_dir: str, cpus: float, gpus: float) -> None:
    started_at = time.time()
    # Ray sets OMP_NUM_THREADS for workers, but torch's intra-op pool is sized at import:
    # oversubscribed cores make every trial on a node crawl.
    torch.set_num_threads(max(1, int(cpus)))
    config = configs(sampled)
    trial_dir = Path(tune.get_context().get_trial_dir())
    run = Run(config, trial_dir / "run", cache_dir=Path(cache_dir), progress=False, save_model=False)
    # Wall-clock marks for overhead accounting: trial start, and ready to train (data and model built).
    where = {**placement_info(), "trial_started_at": started_at, "training_started_at": time.time()}

    device_type = run.device.type
    # Cost: the devices this trial holds, for as long as it has held them (restarts included).
    held = gpus if device_type == "cuda" else cpus

    def report(entry, checkpoint_dir: Path) -> None:
        wall = time.time() - started_at + previous_wall
        metrics = {
            **entry.metrics(), "epochs_total": config.epochs, **where, "device_type": device_type,
            "wall_seconds": wall, "device_seconds": wall * held,
        }
        (checkpoint_dir / WALL_FILE).write_text(str(wall))
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(checkpoint_dir)))

    # Epoch checkpoints are written to a scratch folder; tune.report copies each into the
    # trial's storage, so the storage holds only the checkpoints Tune decides to keep.
    checkpoint = tune.get_checkpoint()
    previous_wall = 0.0
    with tempfile.TemporaryDirectory() as staging:
        if checkpoint is None:
            run.fit(on_epoch=report, checkpoint_dir=Path(staging))
            return
        with checkpoint.as_directory() as restored:
            previous_wall = _previous_wall_seconds(Path(restored))
            run.fit(on_epoch=report, resume_from=Path(restored), checkpoint_dir=Path(staging))


def _previous_wall_seconds(checkpoint_dir: Path) -> float:
    """Wall time the trial spent before its restart, kept next to the checkpoint."""
    marker = checkpoint_dir / WALL_FILE
    return float(marker.read_text()) if marker.is_file() else 0.0
