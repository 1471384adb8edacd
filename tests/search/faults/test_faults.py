"""Faults a search survives without losing results: a killed trial worker, the tracking server
going away (held updates, `metaxl-tune sync`), and trials that diverge or run out of memory.
Each fault is said on one line of ours, without Ray's or MLflow's own tracebacks and paragraphs."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import subprocess
import threading
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from metaxl_tune.results.mlflow_filters import tags_equal
from metaxl_tune.search.driver.options import optuna_storage
from mlflow_records import record_content, search_record
from processes import (
    CLI, FIRST_RESULT, MlflowServer, cli_env, kill_session, read_until, run_cli, trial_worker_pids, tune_results,
    wait_for,
)

EPOCHS = 3
FOREIGN = ("Traceback", "\x1b[", "\N{RUNNER}", "\N{TEST TUBE}")
"""A traceback, an ANSI escape (Ray's coloured paragraphs), MLflow's "🏃 View run" and "🧪 View
experiment" lines."""


def foreign_output(output: str) -> list[str]:
    return [mark for mark in FOREIGN if mark in output]


def trial_runs(uri: str, search: str) -> tuple[list, list]:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("metaxl-tune")
    if experiment is None:
        return [], []
    runs = client.search_runs([experiment.experiment_id], filter_string=tags_equal({"metaxl.search": search}))
    return ([run for run in runs if run.data.tags["metaxl.role"] == "search"],
            [run for run in runs if run.data.tags["metaxl.role"] == "trial"])


def epoch_steps(uri: str, run_id: str) -> list[int]:
    return sorted(metric.step for metric in MlflowClient(uri).get_metric_history(run_id, "dev_f1"))


@pytest.fixture(scope="module")
def outage_search(tmp_path_factory, shared_cache, ray_head):
    """Three trials one after another; the MLflow server is stopped after the first trial's
    first epoch and started again (same store, same port) once the second trial reported.
    The fault is MLflow's, not Ray's: the search joins the session's shared Ray head."""
    workdir = tmp_path_factory.mktemp("outage")
    server = MlflowServer(workdir)
    driver = subprocess.Popen(
        [*CLI, "search", "--task", "ner", "--target", "tk", "--preset", "demo", "--name", "outage",
         "--num-samples", "3", "--max-concurrent", "1", "--scheduler", "fifo", "--tracking-uri", server.uri,
         *ray_head.flags],
        cwd=workdir, env=cli_env(shared_cache, ray_head), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )
    experiment_dir = workdir / "metaxl-searches" / "outage"
    try:
        before = read_until(driver, FIRST_RESULT, timeout=300)
        server.stop()
        wait_for(lambda: len([rows for rows in tune_results(experiment_dir).values() if rows]) >= 2,
                 timeout=300, what="a second trial training while MLflow is down")
        server = MlflowServer(workdir, port=server.port)
        rest, _ = driver.communicate(timeout=600)
        output = before + rest
    finally:
        kill_session(driver.pid)
        driver.wait()
    yield workdir, server, driver.returncode, output
    server.stop()


def test_the_outage_is_said_on_one_line_of_ours_and_nothing_foreign(outage_search):
    _, _, _, output = outage_search
    assert foreign_output(output) == [], output
    assert len([line for line in output.splitlines() if "unreachable" in line]) == 1, output


def test_training_goes_on_while_mlflow_is_down_with_a_warning(outage_search):
    workdir, _, returncode, output = outage_search
    assert returncode == 0, output
    assert "MLflow at http://127.0.0.1" in output and "unreachable" in output and "training continues" in output
    rows = tune_results(workdir / "metaxl-searches" / "outage")
    assert len(rows) == 3 and all([row["epoch"] for row in trial] == [1, 2, 3] for trial in rows.values())


def test_held_updates_are_written_once_mlflow_is_back(outage_search):
    workdir, server, _, output = outage_search
    assert "reachable again" in output
    parents, trials = trial_runs(server.uri, "outage")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(trials) == 3
    for run in trials:
        assert run.info.status == "FINISHED" and run.data.tags["metaxl.outcome"] == "completed"
        assert epoch_steps(server.uri, run.info.run_id) == [1, 2, 3]


def test_sync_backfills_a_tracking_store_from_tune_results_once(outage_search, tmp_path, shared_cache):
    """The server lost for good: sync into an empty one restores the record the driver wrote,
    and a second sync changes no field of any run."""
    workdir, server, _, _ = outage_search
    empty = MlflowServer(tmp_path)
    try:
        first = run_cli(["sync", "--name", "outage", "--tracking-uri", empty.uri], cwd=workdir, cache_dir=shared_cache)
        assert first.returncode == 0, first.stderr
        assert "9 epoch results and 3 final statuses" in first.stdout
        synced = search_record(empty.uri, "outage")
        again = run_cli(["sync", "--name", "outage", "--tracking-uri", empty.uri], cwd=workdir, cache_dir=shared_cache)
        assert "0 epoch results and 0 final statuses" in again.stdout
        assert search_record(empty.uri, "outage") == synced
        assert foreign_output(first.stdout + first.stderr + again.stdout + again.stderr) == []
        # Every run's params, tags and metrics as the driver wrote them: the parent's end-of-search
        # params and metrics included.
        assert record_content(synced) == record_content(search_record(server.uri, "outage"))
        assert {"space", "metric"} <= set(synced["parent"]["params"])
        assert {"trials_completed", "trials_total", "device_hours", "best_dev_f1"} <= set(synced["parent"]["metrics"])
        # The per-config table too, as the driver wrote it (three completed trials: three seeds).
        tables = []
        for uri, record in ((empty.uri, synced), (server.uri, search_record(server.uri, "outage"))):
            folder = tmp_path / f"table-{len(tables)}"
            folder.mkdir()
            path = MlflowClient(uri).download_artifacts(record["parent"]["info"]["run_id"], "configs.json", str(folder))
            tables.append(json.loads(Path(path).read_text(encoding="utf-8"))["data"])
        assert tables[0] == tables[1] and sum(row[2] for row in tables[0]) == 3
        parents, trials = trial_runs(empty.uri, "outage")
        assert len(parents) == 1 and parents[0].info.status == "FINISHED"
        assert len(trials) == 3
        for run in trials:
            assert run.info.status == "FINISHED"
            assert epoch_steps(empty.uri, run.info.run_id) == [1, 2, 3]
            assert {"meta_lr", "rtn_layers", "source"} <= set(run.data.params)
            assert run.data.tags["metaxl.node_id"]
    finally:
        empty.stop()


def test_sync_of_an_unknown_search_is_a_one_line_error(tmp_path, shared_cache):
    result = run_cli(["sync", "--name", "nope"], cwd=tmp_path, cache_dir=shared_cache)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: no search or ablation named nope")
    assert len(result.stderr.strip().splitlines()) == 1


# ---- a trial's worker killed before the trial's first checkpoint ---------------------------------

@pytest.fixture(scope="module")
def killed_worker(tmp_path_factory, shared_cache):
    """One demo trial (three epochs) whose worker process is SIGKILLed once it reported epoch 1:
    its only checkpoint comes at its last epoch (the default policy, every 10 minutes), so
    Tune's retry starts it again from epoch 1."""
    workdir = tmp_path_factory.mktemp("killed-worker")
    driver = subprocess.Popen(
        [*CLI, "search", "--task", "ner", "--target", "tk", "--preset", "demo", "--name", "killed-worker",
         "--num-samples", "1", "--scheduler", "fifo"],
        cwd=workdir, env=cli_env(shared_cache), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )
    experiment_dir = workdir / "metaxl-searches" / "killed-worker"
    try:
        # Killed as soon as the driver has taken epoch 1: the worker is then training epoch 2.
        before = read_until(driver, FIRST_RESULT, timeout=300)
        (worker,) = trial_worker_pids(driver.pid)
        os.kill(worker, signal.SIGKILL)
        rest, _ = driver.communicate(timeout=600)
        output = before + rest
    finally:
        kill_session(driver.pid)
        driver.wait()
    (rows,) = tune_results(experiment_dir).values()
    return workdir, driver.returncode, output, rows


def test_a_killed_worker_is_said_on_one_line_of_ours_and_the_trial_finishes(killed_worker):
    _, returncode, output, rows = killed_worker
    assert returncode == 0, output
    assert foreign_output(output) == [], output
    said = [line for line in output.splitlines() if "worker lost" in line]
    assert len(said) == 1, output
    assert said[0].startswith("[search] trial ") and (
        "failed after epoch 1 (worker lost: its worker process has died" in said[0])
    assert said[0].endswith("no checkpoint yet, so it starts again from epoch 1 (retry 1 of 2); "
                            "redone epochs are logged once, their time is counted")
    assert [row["epoch"] for row in rows] == [1, 1, 2, 3]
    assert "1 completed, 0 pruned, 0 failed" in output


def test_a_restarted_trial_logs_each_epoch_once_and_counts_the_lost_attempts_time(killed_worker):
    workdir, _, _, rows = killed_worker
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    _, (run,) = trial_runs(uri, "killed-worker")
    history = MlflowClient(uri).get_metric_history(run.info.run_id, "dev_f1")
    steps = [metric.step for metric in sorted(history, key=lambda metric: metric.timestamp)]
    assert steps == [1, 2, 3]
    # The redone epoch 1 kept its first value (the lost attempt's).
    assert {metric.step: metric.value for metric in history}[1] == pytest.approx(rows[0]["dev_f1"])
    lost, new = rows[0], rows[-1]
    assert lost["trial_started_at"] != new["trial_started_at"]
    assert run.data.metrics["wall_seconds"] >= lost["wall_seconds"] + new["attempt_seconds"] - 1e-6
    assert run.data.metrics["device_seconds"] >= lost["device_seconds"] + new["device_seconds"] - 1e-6
    # Tune's own record (and the trial's) counts the new attempt alone.
    assert new["wall_seconds"] < run.data.metrics["wall_seconds"]


# A learning rate of 1e5 makes the loss NaN within the first epoch. Out of memory arrives from
# outside, as a batch system's per-job memory limit does: once the first trial (batch 16, first
# in the grid's order for this seed) has reported, its worker's address space is capped at what
# it uses plus MEMORY_HEADROOM (prlimit(2), the syscall of `prlimit --as --pid`). Trials reuse
# that worker (reuse_actors); a batch of 16 fits under the cap, a batch of 1024 asks torch's CPU
# allocator for about 2 GB more and is refused: the trial runs out of memory, the others do not.
UNSTABLE_SPACE = """
metric: best_dev_f1
mode: max
fixed: {method: metaxl, epochs: 2, source_size: 1024, target_size: 1024, max_length: 64, meta_lr: 1.0e-3,
        rtn_bottleneck: 8}
parameters:
  lr: {type: categorical, values: [3.0e-3, 1.0e+5]}
  batch_size: {type: categorical, values: [16, 1024]}
"""
MEMORY_HEADROOM = 1 << 30


def address_space(pid: int) -> int:
    """The process's mapped address space in bytes (what RLIMIT_AS caps)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmSize for process {pid}")


def cap_trial_workers(driver_pid: int, limit: int, capped: set[int], stop: threading.Event) -> None:
    """Cap every trial worker below the driver at ``limit`` bytes of address space, as they come
    (Tune reuses the first one; a worker it starts later gets the same cap)."""
    while not stop.is_set():
        for pid in set(trial_worker_pids(driver_pid)) - capped:
            with contextlib.suppress(ProcessLookupError):
                resource.prlimit(pid, resource.RLIMIT_AS, (limit, limit))
                capped.add(pid)
        stop.wait(0.1)


@pytest.fixture(scope="module")
def unstable_search(tmp_path_factory, shared_cache):
    workdir = tmp_path_factory.mktemp("unstable")
    (workdir / "unstable.yaml").write_text(UNSTABLE_SPACE)
    driver = subprocess.Popen(
        [*CLI, "search", "--task", "ner", "--target", "tk", "--model", "tiny", "--data", "synthetic", "--space",
         "unstable.yaml", "--name", "unstable", "--num-samples", "4", "--sampler", "grid", "--max-concurrent", "1",
         "--scheduler", "fifo", "--search-seed", "5",
         "--repeats", "1"],  # one seed per config: trials are told apart by their config
        cwd=workdir, env=cli_env(shared_cache), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )
    stop, capped = threading.Event(), set()
    try:
        before = read_until(driver, FIRST_RESULT, timeout=300)
        (worker,) = trial_worker_pids(driver.pid)
        limit = address_space(worker) + MEMORY_HEADROOM
        capper = threading.Thread(target=cap_trial_workers, args=(driver.pid, limit, capped, stop), daemon=True)
        capper.start()
        wait_for(lambda: worker in capped, timeout=30, what="the trial worker's address space capped")
        rest, _ = driver.communicate(timeout=900)
        output = before + rest
    finally:
        stop.set()
        kill_session(driver.pid)
        driver.wait()
    return workdir, driver.returncode, output, capped


def test_the_memory_cap_arrived_from_outside_on_the_trials_worker(unstable_search):
    """The premise of the two tests below: the trial that ran out of memory ran in a capped
    worker (Tune reports each result's process id)."""
    workdir, _, output, capped = unstable_search
    pids = {(row["config"]["lr"], row["config"]["batch_size"]): row["pid"]
            for rows in tune_results(workdir / "metaxl-searches" / "unstable").values() for row in rows}
    assert pids[(3e-3, 1024)] in capped, output


def outcomes(workdir) -> dict[tuple, str]:
    _, trials = trial_runs(f"sqlite:///{workdir / 'mlflow.db'}", "unstable")
    return {(float(run.data.params["lr"]), int(run.data.params["batch_size"])): run for run in trials}


def test_diverged_and_out_of_memory_trials_stop_with_their_reason_in_mlflow(unstable_search):
    workdir, returncode, output, _ = unstable_search
    assert returncode == 0, output
    runs = outcomes(workdir)
    assert runs[(1e5, 16)].data.tags["metaxl.outcome"] == "diverged"
    assert runs[(1e5, 16)].data.tags["metaxl.stop_message"].startswith("DivergedError: training loss became nan")
    assert runs[(3e-3, 1024)].data.tags["metaxl.outcome"] == "out_of_memory"
    message = runs[(3e-3, 1024)].data.tags["metaxl.stop_message"]
    assert message.startswith("RuntimeError: ") and "DefaultCPUAllocator: can't allocate memory" in message
    for key in [(1e5, 16), (3e-3, 1024)]:
        assert runs[key].info.status == "FAILED"
    assert runs[(3e-3, 16)].info.status == "FINISHED"
    assert "stopped: diverged" in output and "stopped: out_of_memory" in output and "the search goes on" in output
    assert foreign_output(output) == [], output


def test_diverged_and_out_of_memory_trials_fail_in_optuna_with_their_reason_and_are_not_retried(unstable_search):
    workdir, _, _, _ = unstable_search
    study = optuna.load_study(study_name="unstable", storage=optuna_storage(workdir / "metaxl-searches" / "unstable"))
    assert len(study.trials) == 4
    reasons = {}
    for trial in study.trials:
        key = (trial.params["lr"], trial.params["batch_size"])
        reasons[key] = (trial.state, trial.user_attrs.get("stop_reason"))
    assert reasons[(1e5, 16)] == (optuna.trial.TrialState.FAIL, "diverged")
    assert reasons[(3e-3, 1024)] == (optuna.trial.TrialState.FAIL, "out_of_memory")
    assert reasons[(3e-3, 16)][0] == optuna.trial.TrialState.COMPLETE
    # Tune retries errors (max_failures); a stop reason is a result, so each trial ran once.
    rows = tune_results(workdir / "metaxl-searches" / "unstable")
    assert all(sum("stop_reason" in row for row in trial) <= 1 for trial in rows.values())
    assert all(row.get("iterations_since_restore") == row.get("training_iteration") for trial in rows.values() for row in trial)
