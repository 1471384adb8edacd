"""Shared harness of bench/scale.py and bench/search_overhead.py.

Both benches run the real search, ``metaxl_tune.search.driver.runner.run_search``, through its public
seam ``metaxl_tune.search.driver.hooks.SearchHooks``: ``run_with_hooks`` adds this harness's timing
callback (first in the callback list) and, for scale.py, substitutes a trial body that sleeps
instead of training (``sleeping_trial``). Nothing in ``runner`` is patched.

``sleeping_trial`` reports as ``metaxl_tune.search.execution.trainable.train_trial`` does under the
checkpoint policy (``checkpoint_every``, metaxl_tune/train/checkpoint_policy.py): metrics after every
epoch, a resume checkpoint only on the epochs the policy picks (by default, every 10 minutes
and always the final epoch), through the same ``persistence.report``. It imports neither torch
nor the trainer, so a worker pays only Ray's imports.

This module is shipped to the Ray workers by value (``ship_by_value``): they need not find
bench/ on their path.
"""

from __future__ import annotations

import functools
import sys
import time
from typing import Any, Callable

TIMING_KEYS = ("trial_started_at", "training_started_at", "reported_at", "work_s", "node_id", "gpu_ids",
               "cuda_visible_devices", "device_type", "worker_pid", "epoch", "epochs_total", "checkpointed")


def ship_by_value() -> None:
    """Pickle this module's functions by value, so workers run them without importing bench/."""
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])


# ---- inside the trials -----------------------------------------------------------------------------


def sleeping_trial(sampled: dict[str, Any], *, configs, cache_dir: str, cpus: float, gpus: float,
                   storage_retry_s: float, work_s: float) -> None:
    """train_trial's reports around ``work_s`` seconds of sleep per epoch instead of training."""
    import json
    import math
    import os
    import socket
    import tempfile
    from pathlib import Path

    import ray
    from ray import tune

    from metaxl_tune.train.checkpoint_policy import CheckpointPolicy
    from metaxl_tune.search.faults import persistence

    started_at = time.time()
    config = configs(sampled)  # the trial's RunConfig: epochs and checkpoint_every as a real trial
    epochs = config.total_epochs
    context = ray.get_runtime_context()
    where = {
        "node_id": context.get_node_id(), "hostname": socket.gethostname(),
        "gpu_ids": ",".join(str(gpu) for gpu in ray.get_gpu_ids()),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
        "worker_pid": os.getpid(), "trial_started_at": started_at,
    }
    state = {"epoch": 0, "work_s": 0.0, "wall": 0.0, "best_dev_f1": 0.0, "best_test_f1": 0.0, "best_epoch": 0}
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as restored:
            state = json.loads(Path(restored, "state.json").read_text())
    where["training_started_at"] = time.time()
    policy = CheckpointPolicy(config.checkpoint_every, epochs)  # the trainer's rule (Run.fit)
    # A made-up score the searcher can rank: best near meta_lr 1e-3, rising with epochs.
    quality = -abs(math.log10(float(sampled.get("meta_lr", 1e-3))) + 3.0)
    held = gpus if gpus > 0 else cpus
    previous_wall = state["wall"]
    with tempfile.TemporaryDirectory() as staging:
        for epoch in range(state["epoch"] + 1, epochs + 1):
            slept = time.monotonic()
            time.sleep(work_s)
            slept = time.monotonic() - slept
            dev_f1 = 30.0 + 5.0 * quality + 2.0 * epoch
            if dev_f1 > state["best_dev_f1"]:
                state.update(best_dev_f1=dev_f1, best_test_f1=dev_f1 - 1.0, best_epoch=epoch)
            wall = time.time() - started_at + previous_wall
            state.update(epoch=epoch, work_s=state["work_s"] + slept)
            directory = None
            if policy.due(epoch):
                directory = Path(staging, f"epoch_{epoch}")
                directory.mkdir()
                (directory / "state.json").write_text(json.dumps({**state, "wall": wall}))
                (directory / "trial_progress.json").write_text(json.dumps({"wall_seconds": wall, "epoch": epoch}))
                policy.taken()
            metrics = {
                "epoch": epoch, "dev_f1": dev_f1, "test_f1": dev_f1 - 1.0, "train_loss": 1.0 / epoch,
                "meta_loss": 1.0 / epoch, "epoch_seconds": slept, "best_epoch": state["best_epoch"],
                "best_dev_f1": state["best_dev_f1"], "best_test_f1": state["best_test_f1"],
                "epochs_total": epochs, **where, "device_type": "cuda" if gpus > 0 else "cpu",
                "wall_seconds": wall, "device_seconds": wall * held, "work_s": state["work_s"],
                "checkpointed": directory is not None, "reported_at": time.time(),
            }
            persistence.report(metrics, directory, retry_s=storage_retry_s)


def make_sleeping_trial(work_s: float) -> Callable[..., None]:
    """A SearchHooks.trial: sleeping_trial with ``work_s`` seconds per epoch."""

    def train_trial(sampled, **kwargs):
        return sleeping_trial(sampled, work_s=work_s, **kwargs)

    return train_trial


# ---- driver side -----------------------------------------------------------------------------------


def make_timing_callback(*, track_created: bool = False):
    """Driver-side wall-clock marks per trial; ``track_created`` also marks when the searcher's
    trial first appears (each controller step walks all trials: off for the 200-trial bench)."""
    from ray import tune

    class TimingCallback(tune.Callback):
        def __init__(self):
            self.fit_started: float | None = None
            self.fit_ended: float | None = None
            self.created: dict[str, float] = {}
            self.actor_started: dict[str, float] = {}
            self.first: dict[str, dict] = {}
            self.last: dict[str, dict] = {}
            self.epoch_seconds: dict[str, float] = {}
            self.results: dict[str, int] = {}
            self.checkpoints: dict[str, int] = {}
            self.ended: dict[str, float] = {}
            self.status: dict[str, str] = {}

        def setup(self, **info):
            self.fit_started = time.time()

        if track_created:
            def on_step_begin(self, iteration, trials, **info):
                now = time.time()
                for trial in trials:
                    self.created.setdefault(trial.trial_id, now)

        def on_trial_start(self, iteration, trials, trial, **info):
            now = time.time()
            self.created.setdefault(trial.trial_id, now)
            self.actor_started.setdefault(trial.trial_id, now)

        def on_trial_result(self, iteration, trials, trial, result, **info):
            marks = {key: result.get(key) for key in TIMING_KEYS}
            tid = trial.trial_id
            self.first.setdefault(tid, marks)
            self.last[tid] = marks
            self.epoch_seconds[tid] = self.epoch_seconds.get(tid, 0.0) + float(result.get("epoch_seconds", 0.0))
            self.results[tid] = self.results.get(tid, 0) + 1
            self.checkpoints[tid] = self.checkpoints.get(tid, 0) + int(bool(result.get("checkpointed")))

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.ended[trial.trial_id] = time.time()
            self.status[trial.trial_id] = "completed"

        def on_trial_error(self, iteration, trials, trial, **info):
            self.ended[trial.trial_id] = time.time()
            self.status[trial.trial_id] = "failed"

        def on_experiment_end(self, trials, **info):
            self.fit_ended = time.time()

    return TimingCallback()


def run_with_hooks(options, *, timing, trial: Callable[..., None] | None = None, log: Callable[[str], None] = print):
    """run_search with the timing callback first and, if given, ``trial`` as the trial body."""
    from metaxl_tune.search.driver.hooks import SearchHooks
    from metaxl_tune.search.driver.runner import run_search

    return run_search(options, log=log, hooks=SearchHooks(trial=trial, callbacks=(timing,)))


class MlflowTimer:
    """Wraps Tracker's methods (timing only): seconds per call, attributed to a trial or to the search."""

    METHODS = ("parent_run", "trial_run", "log_metrics", "set_tags", "log_artifacts", "log_files", "end_run", "trial_runs")

    def __init__(self):
        self.per_trial: dict[str, float] = {}
        self.per_method: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.search_s = 0.0
        self.run_to_trial: dict[str, str] = {}
        self._originals: dict[str, object] = {}

    def install(self, tracker_cls) -> None:
        for name in self.METHODS:
            if not hasattr(tracker_cls, name):
                continue
            original = getattr(tracker_cls, name)
            self._originals[name] = original
            setattr(tracker_cls, name, self._timed(name, original))
        self._cls = tracker_cls

    def uninstall(self) -> None:
        for name, original in self._originals.items():
            setattr(self._cls, name, original)

    def _timed(self, name, original):
        timer = self

        @functools.wraps(original)
        def wrapper(tracker, *args, **kwargs):
            started = time.perf_counter()
            trial = None
            try:
                value = original(tracker, *args, **kwargs)
            finally:
                elapsed = time.perf_counter() - started
                timer.per_method[name] = timer.per_method.get(name, 0.0) + elapsed
                timer.calls[name] = timer.calls.get(name, 0) + 1
                if name == "trial_run":
                    trial = kwargs.get("trial_id", args[1] if len(args) > 1 else None)
                elif name not in ("parent_run", "log_files", "trial_runs"):
                    run_id = kwargs.get("run_id", args[0] if args else None)
                    trial = timer.run_to_trial.get(run_id)
                if trial is None:
                    timer.search_s += elapsed
                else:
                    timer.per_trial[trial] = timer.per_trial.get(trial, 0.0) + elapsed
            if name == "trial_run" and trial is not None:
                timer.run_to_trial[value] = trial
            return value

        return wrapper


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]
