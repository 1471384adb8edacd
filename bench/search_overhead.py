"""Overhead of a search around its training: trial start latency, slot utilisation, MLflow share.

    python bench/search_overhead.py                       # 16 trials on 4 declared GPUs, tiny model on CPU
    python bench/search_overhead.py --trials 8 --epochs 1 --source-size 96    # quicker
    python bench/search_overhead.py --max-concurrent 4    # the same with search --max-concurrent 4
    python bench/search_overhead.py --keep                # keep the temp dir (Tune state, mlflow.db)

Runs the real search path (``metaxl_tune.search.driver.runner.run_search``: Optuna + Ray Tune +
the driver-side MLflow callback) on a local Ray that declares ``--gpus`` GPUs it does not
have; every trial gets one "GPU" (``CUDA_VISIBLE_DEVICES`` is set, torch sees no CUDA, the
trial trains on the CPU) and trains a fixed amount (the bench's own space fixes epochs, data
sizes and shapes; only lr and meta_lr are searched; FIFO scheduler, so nothing is pruned).
The data cache is warmed before Ray starts, so the latency is "with cached data".

The bench drives the search through run_search's public hooks
(``metaxl_tune.search.driver.hooks.SearchHooks``, via bench/search_harness.py, shared with
bench/scale.py): a Tune callback run before the search's own (``callbacks``), and a probe
around the library's ``train_trial`` (``trial``) that records whether a trial loaded or called
MLflow, and its process id; plus timers around every ``metaxl_tune.results.tracking.Tracker`` method
(all MLflow traffic of a search goes through it, in the driver). The trials train for real, so
they report and checkpoint as the trainer's checkpoint policy says (``checkpoint_every``,
default 10m: metrics every epoch, a resume checkpoint at the final epoch here). Process id (the ``pid`` column: Ray reuses worker processes, so only new ones pay the imports).

Definitions (all wall clock, ``time.time()``, one host):

* **scheduled**: the moment a trial could have started: ``max(created, slot free)``, where
  *created* is the first Tune controller step that lists the trial (the searcher proposed it)
  and *slot free* is, for the k-th trial to start (k >= slots), the end of the (k-slots)-th
  trial to end (the driver's ``on_trial_complete``) - the slot it takes was idle from then.
  For the first ``slots`` trials it is just *created*.
* **start latency**: ``training_started_at`` (reported by the trial: data and model built,
  the first training step is next) minus *scheduled*. Split into *actor* (scheduled -> Tune's
  ``on_trial_start``: worker process, placement, trainable import), *entry* (-> the trial
  function's first line, ``trial_started_at``) and *build* (-> ``training_started_at``).
  ``start_latency_s`` is the median over trials; the max and mean are reported too.
* **busy fraction**: sum over trials of ``epoch_seconds`` (training plus the per-epoch dev/test
  evaluation) / (slots x (last trial end - first trial scheduled)).
  ``busy_fraction_warm`` leaves out the worker cold starts: the start latency of each trial
  that ran on a new worker process (its first trial; process start and the torch import) is
  taken out of the slot-seconds, as scale.py's warm overhead does.
* **MLflow share**: seconds the driver spent in Tracker calls for trials (trial_run,
  log_metrics, set_tags, log_artifacts, end_run of trial runs) / sum over trials of
  (end - scheduled). The search-level calls (parent run, plots, closing the parent) are
  reported apart as ``mlflow_search_s``.

The last line of output is one JSON object with at least start_latency_s, busy_fraction and
mlflow_share. Targets: start latency <= 3 s, busy fraction >= 0.8 (issue 12), MLflow <= 2 %.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import search_harness  # noqa: E402 - the harness shared with bench/scale.py
from search_harness import MlflowTimer, make_timing_callback, percentile, run_with_hooks  # noqa: E402

# Busy fraction: issue 12's target (>= 0.8); the others from the issue that added this bench.
TARGETS = {"start_latency_s": 3.0, "busy_fraction": 0.8, "mlflow_share": 0.02}

SPACE = """\
description: search_overhead bench - fixed training per trial
metric: best_dev_f1
mode: max
fixed:
  method: metaxl
  epochs: {epochs}
  source_size: {source_size}
  target_size: {target_size}
  batch_size: {batch_size}
  max_length: {max_length}
  rtn_bottleneck: 16
parameters:
  lr: {{type: loguniform, low: 1.0e-3, high: 5.0e-3}}
  meta_lr: {{type: loguniform, low: 1.0e-5, high: 1.0e-2}}
"""

# ---- inside the trials ---------------------------------------------------------------------------


def make_probed_trial(probe_dir: str):
    """A SearchHooks.trial: the library's train_trial, plus a record of whether the trial
    loaded or called MLflow (written to ``probe_dir``). Shipped by value (this is __main__);
    train_trial itself is imported in the worker, as the search does without the hook."""

    def train_trial(sampled, **kwargs):
        from ray import tune

        from metaxl_tune.search.execution.trainable import train_trial as library_trial

        calls = {"n": 0}
        loaded_before = "mlflow" in sys.modules
        if loaded_before:  # count every MlflowClient / fluent call made while the trial runs
            import mlflow
            from mlflow.tracking import MlflowClient

            def counting(function):
                @functools.wraps(function)
                def wrapper(*args, **kw):
                    calls["n"] += 1
                    return function(*args, **kw)
                return wrapper

            for name in [n for n in vars(MlflowClient) if not n.startswith("_") and callable(getattr(MlflowClient, n))]:
                setattr(MlflowClient, name, counting(getattr(MlflowClient, name)))
            for name in ("start_run", "end_run", "log_metric", "log_metrics", "log_param", "log_params",
                         "set_tag", "set_tags", "log_artifact", "log_artifacts", "log_text", "log_dict"):
                if hasattr(mlflow, name):
                    setattr(mlflow, name, counting(getattr(mlflow, name)))
        trial_id = tune.get_context().get_trial_id()
        try:
            return library_trial(sampled, **kwargs)
        finally:
            record = {"trial_id": trial_id, "pid": os.getpid(), "mlflow_loaded_before": loaded_before,
                      "mlflow_loaded_after": "mlflow" in sys.modules, "mlflow_calls": calls["n"]}
            Path(probe_dir, f"{trial_id}.json").write_text(json.dumps(record))

    return train_trial


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--gpus", type=int, default=4, help="GPUs the local Ray declares (it need not have them)")
    parser.add_argument("--cpus", type=float, default=float(os.cpu_count() or 2), help="CPUs the local Ray declares")
    parser.add_argument("--cpus-per-trial", type=float, default=None, help="default: --cpus / --gpus (all slots fit)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per trial (fixed: no pruning)")
    parser.add_argument("--source-size", type=int, default=256, help="source examples; an epoch is source-size/batch steps")
    parser.add_argument("--target-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=48)
    parser.add_argument("--max-concurrent", type=int, default=None,
                        help="SearchOptions.max_concurrent (search --max-concurrent); default: unset, as run_search's default")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (printed) instead of deleting it")
    args = parser.parse_args()

    import ray

    from metaxl_tune.search.driver.options import SearchOptions

    from metaxl_tune.search.driver.preflight import prepare, warm_data_cache
    from metaxl_tune.results.tracking import Tracker

    if ray.is_initialized():
        sys.exit("Ray is already initialised in this process")
    cpus_per_trial = args.cpus_per_trial if args.cpus_per_trial is not None else args.cpus / args.gpus
    slots = int(min(args.gpus, args.cpus / cpus_per_trial + 1e-9))
    root = Path(tempfile.mkdtemp(prefix="metaxl-search-overhead-"))
    probe_dir = root / "probes"
    probe_dir.mkdir()
    space_file = root / "space.yaml"
    space_file.write_text(SPACE.format(epochs=args.epochs, source_size=args.source_size, target_size=args.target_size,
                                       batch_size=args.batch_size, max_length=args.max_length))
    options = SearchOptions(
        name="overhead",
        space=str(space_file),
        base={"task": "ner", "target": "tk", "model": "tiny", "data": "synthetic", "device": "cpu"},
        num_samples=args.trials,
        gpus_per_trial=1,
        cpus_per_trial=cpus_per_trial,
        scheduler="fifo",
        max_concurrent=args.max_concurrent,
        storage=str(root / "searches"),
        tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
        cache_dir=str(root / "cache"),
    )
    log = lambda line: print(f"  {line}", flush=True)  # noqa: E731

    # Warm the encoding cache first (run_search warms it again: then a cache hit).
    started = time.perf_counter()
    warm_data_cache(prepare(options, resume=False), log)
    warm_s = time.perf_counter() - started

    timing = make_timing_callback(track_created=True)
    mlflow_timer = MlflowTimer()
    search_harness.ship_by_value()
    mlflow_timer.install(Tracker)
    os.environ.pop("RAY_ADDRESS", None)
    print(f"search: {args.trials} trials, {slots} slots ({args.gpus} declared GPUs, {cpus_per_trial:g} CPU/trial), "
          f"{args.epochs} epochs x {-(-args.source_size // args.batch_size)} steps per trial; cache warmed in {warm_s:.1f} s",
          flush=True)
    search_started = time.time()
    try:
        # run_search's connect() keeps a Ray that is already up: this one declares the GPUs.
        ray.init(address="local", num_cpus=args.cpus, num_gpus=args.gpus, include_dashboard=False,
                 configure_logging=False, log_to_driver=False)
        outcome = run_with_hooks(options, timing=timing, trial=make_probed_trial(str(probe_dir)), log=log)
    finally:
        ray.shutdown()
        mlflow_timer.uninstall()
    search_s = time.time() - search_started

    # ---- figures ----------------------------------------------------------------------------
    trials = [t for t in timing.ended if t in timing.first]
    if not trials:
        sys.exit("no trial reported a result")
    ends = sorted(timing.ended[t] for t in trials)
    probes = [json.loads(path.read_text()) for path in sorted(probe_dir.glob("*.json"))]
    pids = {p["trial_id"]: p["pid"] for p in probes}
    order = sorted(trials, key=lambda t: timing.actor_started.get(t, timing.first[t]["trial_started_at"]))
    rows = []
    for rank, trial in enumerate(order):
        slot_free = ends[rank - slots] if rank >= slots else float("-inf")
        scheduled = max(timing.created[trial], slot_free)
        marks = timing.first[trial]
        actor = timing.actor_started.get(trial, marks["trial_started_at"])
        rows.append({
            "trial": trial, "gpu": marks["gpu_ids"], "device": marks["device_type"], "scheduled": scheduled,
            "actor_s": actor - scheduled, "entry_s": marks["trial_started_at"] - actor,
            "build_s": marks["training_started_at"] - marks["trial_started_at"],
            "latency_s": marks["training_started_at"] - scheduled,
            "train_s": timing.epoch_seconds.get(trial, 0.0), "wall_s": timing.ended[trial] - scheduled,
            "mlflow_s": mlflow_timer.per_trial.get(trial, 0.0), "status": timing.status[trial], "pid": pids.get(trial),
        })
    first = min(row["scheduled"] for row in rows)
    wall = max(ends) - first
    latencies = [row["latency_s"] for row in rows]
    busy = sum(row["train_s"] for row in rows) / (slots * wall)
    cold_s, seen = 0.0, set()
    for row in sorted(rows, key=lambda row: row["scheduled"]):
        if row["pid"] not in seen:
            seen.add(row["pid"])
            cold_s += row["latency_s"]
    busy_warm = sum(row["train_s"] for row in rows) / (slots * wall - cold_s)
    mlflow_trials_s = sum(mlflow_timer.per_trial.values())
    mlflow_share = mlflow_trials_s / sum(row["wall_s"] for row in rows)
    trial_mlflow_calls = sum(p["mlflow_calls"] for p in probes)
    trials_loading_mlflow = sum(1 for p in probes if p["mlflow_loaded_after"])

    print(f"\n{'trial':>14} {'gpu':>3} {'dev':>4} {'sched@':>7} {'actor':>6} {'entry':>6} {'build':>6} "
          f"{'LATENCY':>7} {'train':>6} {'wall':>6} {'mlflow':>6} {'pid':>7}")
    for row in rows:
        print(f"{row['trial']:>14} {row['gpu']!s:>3} {row['device']!s:>4} {row['scheduled'] - first:7.1f} "
              f"{row['actor_s']:6.2f} {row['entry_s']:6.2f} {row['build_s']:6.2f} {row['latency_s']:7.2f} "
              f"{row['train_s']:6.1f} {row['wall_s']:6.1f} {row['mlflow_s']:6.3f} {row['pid']!s:>7}" + ("" if row["status"] == "completed" else " FAILED"))
    means = {key: statistics.mean(row[key] for row in rows) for key in ("actor_s", "entry_s", "build_s")}
    print(f"latency parts (mean): actor {means['actor_s']:.2f} s, entry {means['entry_s']:.2f} s, build {means['build_s']:.2f} s")
    print("MLflow in the driver: " + ", ".join(f"{name} {mlflow_timer.per_method[name]:.2f} s/{mlflow_timer.calls[name]}"
                                                for name in sorted(mlflow_timer.per_method)))
    print(f"MLflow in the trials: {trial_mlflow_calls} calls; {trials_loading_mlflow} of {len(probes)} trials loaded mlflow")

    summary = {
        "start_latency_s": statistics.median(latencies),
        "busy_fraction": busy,
        "mlflow_share": mlflow_share,
        "busy_fraction_warm": busy_warm,
        "worker_cold_start_s": cold_s,
        "start_latency_mean_s": statistics.mean(latencies),
        "start_latency_p90_s": percentile(latencies, 0.9),
        "start_latency_max_s": max(latencies),
        "latency_parts_mean_s": {key.removesuffix("_s"): value for key, value in means.items()},
        "trials": len(rows),
        "failed": sum(1 for row in rows if row["status"] != "completed"),
        "slots": slots,
        "wall_s": wall,
        "search_s": search_s,
        "warm_cache_s": warm_s,
        "train_s": sum(row["train_s"] for row in rows),
        "trials_per_minute": len(rows) / wall * 60,
        "mlflow_trials_s": mlflow_trials_s,
        "mlflow_search_s": mlflow_timer.search_s,
        "worker_processes": len(set(pids.values())),
        "trial_mlflow_calls": trial_mlflow_calls,
        "trials_loading_mlflow": trials_loading_mlflow,
        "epochs": args.epochs,
        "steps_per_epoch": -(-args.source_size // args.batch_size),
        "devices": sorted({str(row["device"]) for row in rows}),
        "finished": outcome.finished,
        "max_concurrent": args.max_concurrent,
        "targets": TARGETS,
    }
    summary["pass"] = {
        "start_latency_s": summary["start_latency_s"] <= TARGETS["start_latency_s"],
        "busy_fraction": busy >= TARGETS["busy_fraction"],
        "mlflow_share": mlflow_share <= TARGETS["mlflow_share"],
    }
    for key, label in (("start_latency_s", "start latency (median)"), ("busy_fraction", "busy fraction"), ("mlflow_share", "MLflow share")):
        sign = "<=" if key != "busy_fraction" else ">="
        print(f"{label:>22}: {summary[key]:8.3f}   target {sign} {TARGETS[key]:<5g} "
              f"{'PASS' if summary['pass'][key] else 'FAIL'}")
    print(f"{'busy fraction (warm)':>22}: {busy_warm:8.3f}   (leaving out {cold_s:.1f} s of worker cold starts)")
    print(f"{'':>22}  wall {wall:.1f} s for {len(rows)} trials on {slots} slots ({summary['trials_per_minute']:.1f} trials/min)")
    if args.keep:
        print(f"kept {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
