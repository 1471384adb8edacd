"""Orchestration overhead with many trials: 200 short trials over 16 declared GPUs on 2 simulated nodes.

    python bench/scale.py                              # the issue's run: 200 trials, 2 nodes x 8 GPUs, 2 x 1 s per trial (~4 min)
    python bench/scale.py --trials 32 --work 0.5       # smoke run (~2.5 min)
    python bench/scale.py --scaling 1,2,4,8 --per-slot 6   # the weak-scaling series (--scaling '' skips it)
    python bench/scale.py --profile /tmp/driver.prof   # cProfile the driver's Tune loop during the main run
    python bench/scale.py --keep                       # keep the temp dir (Tune state, mlflow.db, logs)

What runs
---------
A ``ray.cluster_utils.Cluster`` on this machine: a head node with no CPUs or GPUs (driver,
GCS) and ``--nodes`` worker nodes (raylets) that each declare ``--gpus-per-node`` GPUs and as
many CPUs; the driver joins it with ``ray.init(address=...)`` and calls the real search
path, ``metaxl_tune.search.driver.runner.run_search`` (its ``connect()`` keeps the Ray already up):
the demo preset (model tiny, synthetic data, space demo: Optuna TPE on a journal file, constant
liar), FIFO scheduler, ``gpus_per_trial=1``, ``cpus_per_trial=1``, one trial per slot
(``max_concurrent`` = slots), reuse_actors, MLflow parent + nested run per trial in a sqlite
store, Tune state and checkpoints (``keep_checkpoints=1``) in a temp dir, the encoding cache
(``METAXL_TUNE_CACHE``) in the temp dir too. Only the trial's body is replaced, through
run_search's public hook (``SearchHooks.trial``, see bench/search_harness.py, shared with
bench/search_overhead.py): ``search_harness.sleeping_trial`` sleeps ``--work`` seconds per
epoch for ``--epochs`` epochs and reports what ``train_trial`` reports (epoch metrics,
epochs_total, best_dev_f1, placement, trial_started_at, training_started_at, wall_seconds,
...) every epoch, with a tiny resume checkpoint only on the epochs the trial's checkpoint
policy picks (``checkpoint_every``, default 10m: the final epoch only, here), as real trials
do. ``--checkpoint-every 1`` restores the old every-epoch traffic for comparison. Sleeping uses no CPU, so on 2 cores what is measured is
the orchestration: Tune's controller, Optuna, MLflow, checkpoint persistence, Ray's actors.
The trial does not import torch: the real trial's one-off import (~10 s per worker process
on this machine) is a per-actor cost, amortised by reuse_actors, and is left out here.

Definitions (wall clock, ``time.time()``, one host)
--------------------------------------------------
* **wall**: from the start of ``Tuner.fit`` (Tune callbacks' ``setup``) to the driver's last
  ``on_trial_complete``. The search's fixed costs around it (checks, data cache, MLflow parent
  run, Optuna plots, ``ray.shutdown``) are reported apart as ``search_s``.
* **work**: per trial, the seconds it measured asleep (its "training"); Sum(work) over trials.
* **trials per minute**: trials / wall minutes.
* **overhead per trial** (``overhead_per_trial_s``, the headline, "cold"):
  ``(wall x slots - Sum(work)) / trials``: slot-seconds not spent on work, per trial. It
  includes each actor's cold start (worker process, ``import ray.tune``, trainable unpickling:
  16 processes at once on 2 cores), the tail (the last wave leaves slots idle: with W s of
  work, ``ceil(n/slots)*slots - n`` idle trial-slots), and everything between and inside trials.
* **warm overhead per trial** (``overhead_per_trial_warm_s``): the same, leaving out the
  actor cold start and the tail: per trial, ``start gap`` (the trial's first line minus the
  moment its slot became free, which is the driver's ``on_trial_complete`` of the
  (k-slots)-th trial to end, for the k-th trial to start) for trials on a reused actor,
  plus ``in-trial`` (first line to last report, minus work: per-epoch ``tune.report``
  round trips through the driver and checkpoint persistence), plus ``finish`` (last report to
  the driver's ``on_trial_complete``: the final result and the extra round trip that ends a
  function trainable). Mean over all trials.
* **weak scaling**: runs with k = 1, 2, 4 slots (``max_concurrent`` = k on the same cluster)
  and ``--per-slot`` trials per slot; ``T(k)`` = wall of that run;
  ``scaling_efficiency_k = T(1) / T(k)`` (1.0 = perfect). With the same work per slot this is
  ``(W + o_1) / (W + o_k)`` where o is the cold overhead per trial, so the warm variant
  ``scaling_efficiency_k_warm = (W + o_warm_1) / (W + o_warm_k)`` is reported beside it.
* **placement**: distinct node ids the trials ran on, trials per node, the most trials seen
  running at once (sweep over [trial_started_at, last report]; must be <= slots), and GPU
  double bookings (two overlapping trials with the same node and GPU id; must be 0).
* **driver**: CPU seconds of the driver process per trial (the Tune loop is serial: when it
  needs D s per trial, at most 1/D trials/s finish, so slots x D - W is the overhead floor of
  a driver-bound search) and the time inside its main parts (wrapped, not changed):
  experiment snapshots (``TuneController.save_to_dir``, forced after every trial checkpoint
  with keep_checkpoints=1), the searcher's save, Optuna (suggest / results / complete on
  sqlite), MLflow (``Tracker`` methods) and Tune's result/save processing. CPU by process
  kind (driver, GCS, raylets, workers) and the machine's total, to see other load.

* **actors**: worker processes that ran trials, actors Tune requested and removed, worker
  processes started. With trials shorter than an actor's start (~3 CPU s here: Python,
  ``import ray.tune``), Tune hands a freed (cached) actor to a trial that waits for its new
  actor and drops the starting one, then starts another for the next trial: fewer slots run
  than declared and the 2 cores go to aborted worker starts (seen with ``--work 0.5``).

Reading the figures: the machine has 2 cores for the driver, GCS, 3 raylets and 16 workers;
the CPU line shows where they went, and "outside this bench" is other load on the machine
(it slows everything here: compare runs only when it is small). The Tune loop in the driver
is one thread; once ``slots x (driver seconds per trial)`` exceeds a trial's length, the
overhead per trial is that difference, whatever the trials do.

A warm-up search (2 trials, 1 slot) runs first and is not reported: it creates the MLflow
schema and the data cache and loads the driver's imports once. Every search then starts its
own actors (run_search ends with ``ray.shutdown()``, so actors never outlive a search): the
cold figures are what a user waits for; the warm ones are the steady-state cost per trial.

The last line of output is one JSON object with at least trials_per_minute,
overhead_per_trial_s and scaling_efficiency_4 (and pass booleans for the targets:
overhead per trial <= 2 s (issue 12), efficiency >= 0.85).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import itertools
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent))
import search_harness  # the shared harness: sleeping trial, timing callback, MLflow timing
from search_harness import MlflowTimer, make_sleeping_trial, make_timing_callback, percentile, run_with_hooks

# Issue 12: overhead per trial <= 2 s; issue 5's scaling target stays.
TARGETS = {"overhead_per_trial_s": 2.0, "scaling_efficiency_4": 0.85}


class Timers:
    """Seconds and calls inside wrapped methods of the driver (the methods are not changed)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.samples: dict[str, list[float]] = {}

    def patch(self, stack: contextlib.ExitStack, owner, name: str, label: str) -> None:
        original = getattr(owner, name)
        timers = self

        @functools.wraps(original)
        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - started
                timers.seconds[label] = timers.seconds.get(label, 0.0) + elapsed
                timers.calls[label] = timers.calls.get(label, 0) + 1
                timers.samples.setdefault(label, []).append(elapsed)

        stack.enter_context(mock.patch.object(owner, name, timed))


class CpuMeter:
    """CPU seconds by process kind (this process tree, sampled each second) and for the machine."""

    def __init__(self, interval: float = 1.0):
        import psutil  # Ray ships it (ray/thirdparty_files, on sys.path once ray is imported)

        self.psutil = psutil
        self.interval = interval
        self.baseline: dict[tuple, float] = {}
        self.latest: dict[tuple, tuple[str, float]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _kind(self, process) -> str:
        if process.pid == os.getpid():
            return "driver"
        try:
            name = process.name()
            title = " ".join(process.cmdline()[:3])
        except self.psutil.Error:
            return "other ray"
        if "gcs_server" in name:
            return "gcs"
        if name == "raylet" or "/raylet" in title:
            return "raylets"
        if title.startswith("ray::") or "default_worker.py" in title:
            return "workers"  # Python worker processes, starting (default_worker.py) or titled ray::...
        return "other ray"  # dashboard/runtime-env agents, log monitor

    def _sample(self, first: bool = False) -> None:
        me = self.psutil.Process()
        try:
            processes = [me, *me.children(recursive=True)]
        except self.psutil.Error:
            return
        for process in processes:
            try:
                key = (process.pid, process.create_time())
                times = process.cpu_times()
                kind = self._kind(process)
            except self.psutil.Error:
                continue
            used = times.user + times.system
            if first:
                self.baseline[key] = used
            self.latest[key] = (kind, used)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def start(self) -> None:
        self._machine = self.psutil.cpu_times()
        self._sample(first=True)
        self._started = time.time()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def stop(self) -> dict[str, float]:
        self._sample()
        self._stop.set()
        self._thread.join()
        elapsed = time.time() - self._started
        machine = self.psutil.cpu_times()

        def busy(t) -> float:
            return t.user + t.system + getattr(t, "nice", 0) + getattr(t, "irq", 0) + getattr(t, "softirq", 0)

        kinds: dict[str, float] = {}
        for key, (kind, used) in self.latest.items():
            kinds[kind] = kinds.get(kind, 0.0) + used - self.baseline.get(key, 0.0)
        machine_busy = busy(machine) - busy(self._machine)
        kinds["outside this bench"] = max(0.0, machine_busy - sum(kinds.values()))
        started_workers = sum(1 for key, (kind, _) in self.latest.items() if kind == "workers" and key not in self.baseline)
        return {"elapsed_s": elapsed, "machine_busy_s": machine_busy, "worker_processes_started": started_workers,
                "machine_cores": self.psutil.cpu_count(), **{f"{k}_s": v for k, v in sorted(kinds.items())}}


def sweep_max(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def gpu_double_bookings(rows: list[dict]) -> int:
    by_gpu: dict[tuple, list[tuple[float, float]]] = {}
    for row in rows:
        for gpu in str(row["gpu_ids"] or "").split(","):
            if gpu:
                by_gpu.setdefault((row["node_id"], gpu), []).append((row["started"], row["last_report"]))
    clashes = 0
    for intervals in by_gpu.values():
        intervals.sort()
        clashes += sum(1 for (_, end), (start, _) in itertools.pairwise(intervals) if start < end - 1e-6)
    return clashes


def run_one(label: str, *, cluster, root: Path, trials: int, slots: int, args, profile: str | None = None) -> dict:
    """One run_search on the running cluster; figures of that search."""
    import ray
    from ray.air.execution._internal.actor_manager import RayActorManager
    from ray.tune.callback import CallbackList
    from ray.tune.execution.tune_controller import TuneController
    from ray.tune.search.search_generator import SearchGenerator

    from metaxl_tune.search.records.callbacks import MlflowTrialCallback
    from metaxl_tune.search.space.pruning import PruningAwareOptunaSearch
    from metaxl_tune.search.driver.options import SearchOptions
    from metaxl_tune.results.tracking import Tracker

    options = SearchOptions(
        name=label,
        preset="demo",
        base={"task": "ner", "target": "tk", "epochs": args.epochs, "checkpoint_every": args.checkpoint_every},
        num_samples=trials,
        max_concurrent=slots,
        scheduler="fifo",
        gpus_per_trial=1,
        cpus_per_trial=args.cpus_per_trial,
        storage=str(root / "searches"),
        tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
        cache_dir=str(root / "cache"),
        seed=0,
    )
    timing = make_timing_callback()
    timers = Timers()
    mlflow_timer = MlflowTimer()
    meter = CpuMeter()
    log_path = root / f"{label}.log"
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
    ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
    usage_before = resource.getrusage(resource.RUSAGE_SELF)
    search_started = time.time()
    with contextlib.ExitStack() as stack:
        for owner, name, tag in (
            (TuneController, "save_to_dir", "tune: experiment snapshot (save_to_dir)"),
            (SearchGenerator, "save_to_dir", "  of which searcher pickle"),
            (CallbackList, "save_to_dir", "  of which callbacks pickle"),
            (TuneController, "_maybe_update_trial_queue", "tune: ask searcher for trials"),
            (TuneController, "_maybe_add_actors", "tune: place trials / start or reuse actors"),
            (TuneController, "_process_trial_results", "tune: process results (callbacks, searcher)"),
            (TuneController, "_process_trial_save", "tune: register checkpoint (keep 1, delete old)"),
            (TuneController, "_schedule_trial_stop", "tune: stop trial (on_trial_complete callbacks)"),
            (TuneController, "on_step_begin", "tune: update available resources"),
            (RayActorManager, "add_actor", "ray: actors requested (new worker processes)"),
            (TuneController, "_remove_actor", "tune: actors removed (incl. starting ones)"),
            (PruningAwareOptunaSearch, "suggest", "optuna: suggest (TPE, journal)"),
            (PruningAwareOptunaSearch, "on_trial_result", "optuna: report intermediate (journal)"),
            (PruningAwareOptunaSearch, "on_trial_complete", "optuna: tell (journal)"),
            (MlflowTrialCallback, "on_trial_result", "mlflow callback: on_trial_result"),
            (MlflowTrialCallback, "on_trial_complete", "mlflow callback: on_trial_complete"),
            (MlflowTrialCallback, "on_trial_start", "mlflow callback: on_trial_start"),
        ):
            timers.patch(stack, owner, name, tag)
        mlflow_timer.install(Tracker)
        stack.callback(mlflow_timer.uninstall)
        meter.start()
        stack.callback(meter._stop.set)
        with open(log_path, "w") as log_file, contextlib.redirect_stdout(log_file):
            if profiler is not None:
                profiler.enable()
            try:
                outcome = run_with_hooks(options, timing=timing, trial=make_sleeping_trial(args.work),
                                         log=lambda line: print(f"  {line}", flush=True))
            finally:
                if profiler is not None:
                    profiler.disable()
                if ray.is_initialized():
                    ray.shutdown()
        cpu = meter.stop()
    search_s = time.time() - search_started
    usage_after = resource.getrusage(resource.RUSAGE_SELF)
    driver_cpu_s = (usage_after.ru_utime + usage_after.ru_stime) - (usage_before.ru_utime + usage_before.ru_stime)
    if profiler is not None:
        profiler.dump_stats(profile)

    # ---- per-trial rows --------------------------------------------------------------------------
    done = [t for t in timing.ended if t in timing.last]
    if not done:
        raise SystemExit(f"{label}: no trial reported a result (see {log_path})")
    fit_started = timing.fit_started
    ends_sorted = sorted(timing.ended[t] for t in done)
    order = sorted(done, key=lambda t: timing.first[t]["trial_started_at"])
    seen_pids: set = set()
    rows = []
    for rank, trial in enumerate(order):
        first, last = timing.first[trial], timing.last[trial]
        slot_free = ends_sorted[rank - slots] if rank >= slots else fit_started
        reused = first["worker_pid"] in seen_pids
        seen_pids.add(first["worker_pid"])
        started = first["trial_started_at"]
        rows.append({
            "trial": trial, "node_id": first["node_id"], "gpu_ids": first["gpu_ids"], "pid": first["worker_pid"],
            "reused": reused, "started": started, "last_report": last["reported_at"], "work": float(last["work_s"]),
            "start_gap": started - slot_free,
            "in_trial": last["reported_at"] - started - float(last["work_s"]),
            "finish": timing.ended[trial] - last["reported_at"],
            "epochs": last["epoch"], "status": timing.status[trial], "checkpoints": timing.checkpoints.get(trial, 0),
        })
    wall = max(ends_sorted) - fit_started
    work = sum(row["work"] for row in rows)
    n = len(rows)
    cold = (wall * slots - work) / n
    startup = [row["start_gap"] for row in rows if not row["reused"]]
    warm_gaps = [row["start_gap"] for row in rows if row["reused"]]
    warm = (sum(warm_gaps) + sum(row["in_trial"] + row["finish"] for row in rows)) / n
    used = sum(row["start_gap"] + row["work"] + row["in_trial"] + row["finish"] for row in rows)
    nodes: dict[str, int] = {}
    for row in rows:
        nodes[row["node_id"]] = nodes.get(row["node_id"], 0) + 1
    driver_parts = {label_: {"s": seconds, "calls": timers.calls[label_]} for label_, seconds in timers.seconds.items()}
    # Growth with the number of trials: mean seconds per call in the first and the last quarter of calls.
    growth = {}
    for label_, key in (("tune: experiment snapshot (save_to_dir)", "snapshot"), ("optuna: suggest (TPE, journal)", "suggest"),
                        ("mlflow callback: on_trial_start", "mlflow_trial_start")):
        samples = timers.samples.get(label_, [])
        quarter = max(1, len(samples) // 4)
        if samples:
            growth[key] = {"first_quarter_ms": 1000 * statistics.mean(samples[:quarter]),
                           "last_quarter_ms": 1000 * statistics.mean(samples[-quarter:])}
    requested = timers.calls.get("ray: actors requested (new worker processes)", 0)
    removed = timers.calls.get("tune: actors removed (incl. starting ones)", 0)
    mlflow_parts = {name: {"s": mlflow_timer.per_method[name], "calls": mlflow_timer.calls[name]}
                    for name in sorted(mlflow_timer.per_method)}
    return {
        "label": label, "trials": n, "requested": trials, "slots": slots,
        "failed": sum(1 for row in rows if row["status"] != "completed"),
        "wall_s": wall, "work_s": work, "work_per_trial_s": work / n,
        "trials_per_minute": n / wall * 60,
        "overhead_per_trial_s": cold, "overhead_per_trial_warm_s": warm,
        "checkpoints_per_trial": statistics.mean(row["checkpoints"] for row in rows),
        "parts_per_trial_s": {
            "actor_cold_start": sum(startup) / n,
            "start_gap_reused": sum(warm_gaps) / n,
            "in_trial": statistics.mean(row["in_trial"] for row in rows),
            "finish": statistics.mean(row["finish"] for row in rows),
            "idle_tail_and_rest": (wall * slots - used) / n,
        },
        "start_gap_reused_median_s": statistics.median(warm_gaps) if warm_gaps else None,
        "start_gap_reused_p90_s": percentile(warm_gaps, 0.9) if warm_gaps else None,
        "actor_start_mean_s": statistics.mean(startup), "actor_start_max_s": max(startup),
        "actors": len(seen_pids), "actors_requested": requested, "actors_removed": removed, "growth": growth,
        "nodes_used": len(nodes), "trials_per_node": sorted(nodes.values(), reverse=True),
        "gpus_used": len({(row["node_id"], row["gpu_ids"]) for row in rows}),
        "max_concurrent_seen": sweep_max([(row["started"], row["last_report"]) for row in rows]),
        "gpu_double_bookings": gpu_double_bookings(rows),
        "search_s": search_s, "fit_s": (timing.fit_ended or max(ends_sorted)) - fit_started,
        "driver_cpu_s": driver_cpu_s, "driver_cpu_per_trial_s": driver_cpu_s / n,
        "driver_parts": driver_parts, "mlflow_parts": mlflow_parts, "cpu": cpu,
        "counts": outcome.counts, "finished": outcome.finished, "log": str(log_path),
    }


def start_cluster(args):
    from ray.cluster_utils import Cluster

    store = 256 * 1024 * 1024
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "num_gpus": 0, "include_dashboard": False, "object_store_memory": store})
    for _ in range(args.nodes):
        cluster.add_node(num_cpus=int(args.gpus_per_node * args.cpus_per_trial + 0.999), num_gpus=args.gpus_per_node,
                         object_store_memory=store)
    cluster.wait_for_nodes()
    return cluster


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=200, help="trials of the main run")
    parser.add_argument("--nodes", type=int, default=2, help="simulated worker nodes")
    parser.add_argument("--gpus-per-node", type=int, default=8, help="GPUs each node declares (it need not have them)")
    parser.add_argument("--work", type=float, default=1.0, help="seconds of (sleeping) work per epoch")
    parser.add_argument("--epochs", type=int, default=2, help="epochs (reports) per trial")
    parser.add_argument("--checkpoint-every", default="10m",
                        help="the trials' checkpoint_every (RunConfig; default 10m as search's default; 1 = every epoch)")
    parser.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs a trial asks for (nodes declare enough)")
    parser.add_argument("--scaling", default="1,2,4", help="slots of the weak-scaling runs ('' to skip)")
    parser.add_argument("--per-slot", type=int, default=6, help="trials per slot in the weak-scaling runs")
    parser.add_argument("--no-warmup", action="store_true", help="skip the unreported warm-up search")
    parser.add_argument("--profile", default=None, help="cProfile the driver during the main run; write pstats here")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (printed) instead of deleting it")
    args = parser.parse_args()

    import ray
    if ray.is_initialized():
        sys.exit("Ray is already initialised in this process")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")  # the data cache is built in the warm-up
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    search_harness.ship_by_value()  # the sleeping trial runs in workers that cannot import bench/
    slots = args.nodes * args.gpus_per_node
    scaling = [int(k) for k in args.scaling.split(",") if k.strip()]
    root = Path(tempfile.mkdtemp(prefix="metaxl-scale-"))
    os.environ["METAXL_TUNE_CACHE"] = str(root / "cache")  # before the nodes start: workers inherit it
    os.environ.pop("RAY_ADDRESS", None)
    os.chdir(root)  # anything written to the working directory lands in the temp dir
    print(f"scale: {args.trials} trials on {args.nodes} nodes x {args.gpus_per_node} GPUs ({slots} slots), "
          f"{args.epochs} epochs x {args.work:g} s per trial; weak scaling {scaling} x {args.per_slot} trials/slot; "
          f"temp {root}", flush=True)
    started = time.time()
    cluster = start_cluster(args)
    print(f"cluster up in {time.time() - started:.1f} s", flush=True)
    runs: dict[str, dict] = {}
    try:
        if not args.no_warmup:
            t0 = time.time()
            run_one("warmup", cluster=cluster, root=root, trials=2, slots=1, args=args)
            print(f"warm-up search (not reported) {time.time() - t0:.1f} s", flush=True)
        for k in scaling:
            runs[f"scale{k}"] = run_one(f"scale{k}", cluster=cluster, root=root, trials=args.per_slot * k, slots=k, args=args)
            print(f"scale{k}: wall {runs[f'scale{k}']['wall_s']:.1f} s", flush=True)
        runs["main"] = run_one("main", cluster=cluster, root=root, trials=args.trials, slots=slots, args=args,
                               profile=args.profile)
        print(f"main: wall {runs['main']['wall_s']:.1f} s", flush=True)
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()
    total_s = time.time() - started

    # ---- report ------------------------------------------------------------------------------------
    main_run = runs["main"]
    print(f"\n{'run':>7} {'trials':>6} {'slots':>5} {'wall s':>7} {'work/tr':>7} {'tr/min':>7} {'ovh cold':>8} "
          f"{'ovh warm':>8} {'act start':>9} {'gap':>5} {'in-tr':>5} {'finish':>6} {'tail':>5} "
          f"{'nodes':>5} {'gpus':>4} {'maxconc':>7} {'actors':>6} {'req':>4} {'fail':>4}")
    for name, run in runs.items():
        parts = run["parts_per_trial_s"]
        print(f"{name:>7} {run['trials']:>6} {run['slots']:>5} {run['wall_s']:7.1f} {run['work_per_trial_s']:7.2f} "
              f"{run['trials_per_minute']:7.1f} {run['overhead_per_trial_s']:8.2f} {run['overhead_per_trial_warm_s']:8.2f} "
              f"{run['actor_start_mean_s']:9.2f} {parts['start_gap_reused']:5.2f} {parts['in_trial']:5.2f} "
              f"{parts['finish']:6.2f} {parts['idle_tail_and_rest']:5.2f} {run['nodes_used']:>5} {run['gpus_used']:>4} "
              f"{run['max_concurrent_seen']:>7} {run['actors']:>6} {run['actors_requested']:>4} {run['failed']:>4}")
    print("  (per-trial seconds; ovh cold = ovh warm + actor cold start/trial + tail; act start = mean seconds from fit "
          "start to a new actor's first trial; actors = worker processes that ran trials, req = actors Tune requested)")

    efficiency: dict[str, float] = {}
    if 1 in scaling:
        base = runs["scale1"]
        print(f"\nweak scaling ({args.per_slot} trials per slot, {base['work_per_trial_s']:.2f} s work per trial)")
        print(f"{'slots':>5} {'T(k) s':>7} {'eff':>6} {'eff warm':>8}")
        for k in scaling:
            run = runs[f"scale{k}"]
            efficiency[f"scaling_efficiency_{k}"] = base["wall_s"] / run["wall_s"]
            w = run["work_per_trial_s"]
            efficiency[f"scaling_efficiency_{k}_warm"] = (base["work_per_trial_s"] + base["overhead_per_trial_warm_s"]) / (
                w + run["overhead_per_trial_warm_s"])
            print(f"{k:>5} {run['wall_s']:7.1f} {efficiency[f'scaling_efficiency_{k}']:6.3f} "
                  f"{efficiency[f'scaling_efficiency_{k}_warm']:8.3f}")

    n = main_run["trials"]
    print(f"\ndriver of the main run: {main_run['driver_cpu_s']:.1f} CPU s = {main_run['driver_cpu_per_trial_s'] * 1000:.0f} ms "
          f"per trial (driver-bound floor of the cold overhead: {slots} x that - work = "
          f"{slots * main_run['driver_cpu_per_trial_s'] - main_run['work_per_trial_s']:.2f} s per trial)")
    print(f"{'part (wall in wrapped driver methods; nested rows overlap)':<58} {'s':>7} {'calls':>6} {'ms/trial':>8}")
    for part, value in sorted(main_run["driver_parts"].items(), key=lambda item: item[0]):
        print(f"{part:<58} {value['s']:7.2f} {value['calls']:>6} {value['s'] / n * 1000:8.1f}")
    for part, value in main_run["mlflow_parts"].items():
        print(f"{'mlflow Tracker.' + part:<58} {value['s']:7.2f} {value['calls']:>6} {value['s'] / n * 1000:8.1f}")
    cpu = main_run["cpu"]
    print(f"CPU during the main search ({cpu['elapsed_s']:.0f} s x {cpu['machine_cores']} cores = "
          f"{cpu['elapsed_s'] * cpu['machine_cores']:.0f} core-s; machine busy {cpu['machine_busy_s']:.0f} s): " + ", ".join(
              f"{key.removesuffix('_s')} {value:.0f} s" for key, value in cpu.items()
              if key not in ("elapsed_s", "machine_busy_s", "machine_cores", "worker_processes_started")))
    print(f"actors: {main_run['actors_requested']} requested, {main_run['actors']} ran trials, {main_run['actors_removed']} removed "
          f"(a trial waiting for its new actor takes a freed cached one and Tune drops the starting actor); "
          f"{cpu['worker_processes_started']} worker processes started")
    print("growth with trials (first -> last quarter of calls): " + ", ".join(
        f"{key} {value['first_quarter_ms']:.0f} -> {value['last_quarter_ms']:.0f} ms" for key, value in main_run["growth"].items()))
    print(f"search fixed costs (checks, cache, MLflow parent, plots, shutdown): {main_run['search_s'] - main_run['fit_s']:.1f} s "
          f"of {main_run['search_s']:.1f} s; outcome {main_run['counts']}")

    summary = {
        "trials_per_minute": main_run["trials_per_minute"],
        "overhead_per_trial_s": main_run["overhead_per_trial_s"],
        "scaling_efficiency_4": efficiency.get("scaling_efficiency_4"),
        "scaling_efficiency_2": efficiency.get("scaling_efficiency_2"),
        "overhead_per_trial_warm_s": main_run["overhead_per_trial_warm_s"],
        "scaling_efficiency_4_warm": efficiency.get("scaling_efficiency_4_warm"),
        "scaling_efficiency_2_warm": efficiency.get("scaling_efficiency_2_warm"),
        **{key: value for key, value in efficiency.items() if key not in (
            "scaling_efficiency_2", "scaling_efficiency_4", "scaling_efficiency_2_warm", "scaling_efficiency_4_warm")},
        "trials": n, "failed": main_run["failed"], "slots": slots, "nodes": args.nodes,
        "gpus_per_node": args.gpus_per_node, "work_per_trial_s": main_run["work_per_trial_s"], "epochs": args.epochs,
        "checkpoint_every": args.checkpoint_every, "checkpoints_per_trial": main_run["checkpoints_per_trial"],
        "wall_s": main_run["wall_s"], "search_s": main_run["search_s"],
        "parts_per_trial_s": main_run["parts_per_trial_s"],
        "start_gap_reused_median_s": main_run["start_gap_reused_median_s"],
        "actor_start_mean_s": main_run["actor_start_mean_s"], "actor_start_max_s": main_run["actor_start_max_s"],
        "actors": main_run["actors"], "actors_requested": main_run["actors_requested"],
        "actors_removed": main_run["actors_removed"], "growth_ms": main_run["growth"],
        "placement": {"nodes_used": main_run["nodes_used"], "trials_per_node": main_run["trials_per_node"],
                      "gpus_used": main_run["gpus_used"], "max_concurrent_seen": main_run["max_concurrent_seen"],
                      "gpu_double_bookings": main_run["gpu_double_bookings"]},
        "driver_cpu_per_trial_s": main_run["driver_cpu_per_trial_s"],
        "driver_parts_s": {key: round(value["s"], 3) for key, value in main_run["driver_parts"].items()},
        "mlflow_parts_s": {key: round(value["s"], 3) for key, value in main_run["mlflow_parts"].items()},
        "cpu_s": {key: round(value, 1) for key, value in cpu.items()},
        "scaling_walls_s": {k: runs[f"scale{k}"]["wall_s"] for k in scaling},
        "total_s": total_s,
        "targets": TARGETS,
    }
    summary["pass"] = {
        "overhead_per_trial_s": summary["overhead_per_trial_s"] <= TARGETS["overhead_per_trial_s"],
        "scaling_efficiency_4": summary["scaling_efficiency_4"] is not None
        and summary["scaling_efficiency_4"] >= TARGETS["scaling_efficiency_4"],
        "overhead_per_trial_warm_s": summary["overhead_per_trial_warm_s"] <= TARGETS["overhead_per_trial_s"],
        "scaling_efficiency_4_warm": summary["scaling_efficiency_4_warm"] is not None
        and summary["scaling_efficiency_4_warm"] >= TARGETS["scaling_efficiency_4"],
        "placement": main_run["nodes_used"] == min(args.nodes, n) and main_run["max_concurrent_seen"] <= slots
        and main_run["gpu_double_bookings"] == 0,
    }
    print()
    for key, label, sign in (("overhead_per_trial_s", "overhead per trial (cold)", "<="),
                             ("overhead_per_trial_warm_s", "overhead per trial (warm)", "<="),
                             ("scaling_efficiency_4", "scaling efficiency 4 (cold)", ">="),
                             ("scaling_efficiency_4_warm", "scaling efficiency 4 (warm)", ">=")):
        target = TARGETS[key.replace("_warm", "")]
        value = summary[key]
        shown = f"{value:8.3f}" if value is not None else "     n/a"
        print(f"{label:>28}: {shown}   target {sign} {target:<5g} {'PASS' if summary['pass'][key] else 'FAIL'}")
    print(f"{'trials per minute':>28}: {summary['trials_per_minute']:8.1f}   ({n} trials, wall {main_run['wall_s']:.1f} s)")
    print(f"{'placement':>28}: {main_run['nodes_used']} nodes {main_run['trials_per_node']}, {main_run['gpus_used']} GPUs, "
          f"max {main_run['max_concurrent_seen']} at once of {slots} slots, {main_run['gpu_double_bookings']} GPU double "
          f"bookings {'PASS' if summary['pass']['placement'] else 'FAIL'}")
    if args.keep:
        print(f"kept {root}")
    else:
        os.chdir(tempfile.gettempdir())
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
