"""SIGTERM to the driver's whole process group, as `timeout`, Slurm and batch systems send it,
ends a search as a SIGTERM to the driver alone does: Ray's own processes run in a session of
their own (cluster.ray_processes_in_their_own_session), so the driver can still stop Tune
gracefully, mark its runs, and shut them down."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from metaxl_tune.mlflow_filters import tags_equal
from metaxl_tune.search.runner import optuna_storage
from processes import (
    CLI, FIRST_RESULT, cli_env, descendants, kill_session, process_start, read_until, run_cli, session_pids, wait_for,
)

NAME = "group-signalled"
TRIALS = 2
# Three epochs: the signal (sent once a first epoch is reported) must find the trials still running.
SPACE = """
metric: best_dev_f1
mode: max
fixed: {method: metaxl, epochs: 3, lr: 3.0e-3, source_size: 160, target_size: 100, batch_size: 16,
        max_length: 32, rtn_bottleneck: 8}
parameters:
  meta_lr: {type: loguniform, low: 1.0e-5, high: 1.0e-2}
"""


def search_state(workdir: Path) -> tuple[list, list, list]:
    """(Optuna trials, parent runs, trial runs) of the search, from its journal and ./mlflow.db."""
    study = optuna.load_study(study_name=NAME, storage=optuna_storage(workdir / "metaxl-searches" / NAME))
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("metaxl-tune")
    runs = client.search_runs([experiment.experiment_id], tags_equal({"metaxl.search": NAME}), max_results=1000)
    return (study.trials, [run for run in runs if run.data.tags["metaxl.role"] == "search"],
            [run for run in runs if run.data.tags["metaxl.role"] == "trial"])


@pytest.fixture(scope="module")
def signalled(tmp_path_factory, shared_cache):
    """A search in a process group of its own (the driver leads it, as under `timeout`), sent
    SIGTERM by group once a trial has reported an epoch; then resumed with --resume."""
    workdir = tmp_path_factory.mktemp("group-signal")
    (workdir / "space.yaml").write_text(SPACE)
    driver = subprocess.Popen(
        [*CLI, "search", "--task", "ner", "--target", "tk", "--model", "tiny", "--data", "synthetic",
         "--space", "space.yaml", "--name", NAME, "--num-samples", str(TRIALS), "--max-concurrent", "2",
         "--scheduler", "fifo"],
        cwd=workdir, env=cli_env(shared_cache), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )
    try:
        before = read_until(driver, FIRST_RESULT, timeout=300)
        ray_processes = descendants(driver.pid)
        in_drivers_session = sorted(set(ray_processes) & set(session_pids(driver.pid)))
        signalled_at = time.monotonic()
        os.killpg(driver.pid, signal.SIGTERM)  # what `timeout` does: kill(-pgid, SIGTERM)
        rest, _ = driver.communicate(timeout=300)
        seconds = time.monotonic() - signalled_at
        output = before + rest
    finally:
        kill_session(driver.pid)
        driver.wait()
    # ray.shutdown stops the raylet, which ends its workers; give those a moment to exit.
    try:
        wait_for(lambda: not any(process_start(pid) == start for pid, start in ray_processes.items()),
                 timeout=60, what="Ray's processes to end")
        left = {}
    except AssertionError:
        left = {pid: start for pid, start in ray_processes.items() if process_start(pid) == start}
        for pid in left:  # not to leak them into the rest of the session
            os.kill(pid, signal.SIGKILL)
    stopped = search_state(workdir)
    resumed = run_cli(["search", "--name", NAME, "--resume"], cwd=workdir, cache_dir=shared_cache)
    return driver.returncode, output, seconds, ray_processes, in_drivers_session, left, stopped, resumed, search_state(workdir)


def test_a_group_sigterm_stops_the_search_like_a_sigterm_to_the_driver(signalled):
    returncode, output, seconds, *_ = signalled
    assert returncode in (130, 143), output
    # The broken ending: the GCS died with the group and the driver waited 60 s for it, then exited 1.
    assert seconds < 30, f"{seconds:.0f} s\n{output}"
    assert "SIGTERM: starting no more trials" in output
    assert f"Resume with: metaxl-tune search --name {NAME} --resume" in output
    assert "Failed to connect to GCS" not in output and "Traceback" not in output, output


def test_ray_processes_left_the_drivers_group_and_none_outlives_the_driver(signalled):
    _, output, _, ray_processes, in_drivers_session, left, *_ = signalled
    # The GCS server, the raylet and their kin ran below the driver, in sessions other than its own.
    assert len(ray_processes) >= 2, output
    assert not in_drivers_session, f"in the driver's session: {in_drivers_session}"
    assert not left, f"still running after the driver ended: {sorted(left)}"


def test_nothing_is_left_running_in_mlflow_or_optuna(signalled):
    *_, (optuna_trials, parents, runs), _, _ = signalled
    assert parents[0].info.status == "KILLED"
    assert runs and all(run.info.status != "RUNNING" for run in runs)
    assert any(run.data.tags.get("metaxl.outcome") == "interrupted" for run in runs)
    # The stopped trials' Optuna trials are closed as interrupted; the resume opens new ones.
    assert optuna_trials and all(t.state != optuna.trial.TrialState.RUNNING for t in optuna_trials)
    closed = [t for t in optuna_trials if t.state == optuna.trial.TrialState.FAIL]
    assert closed and all(t.user_attrs.get("stop_reason") == "interrupted" for t in closed)


def test_resume_after_a_group_sigterm_finishes_every_trial_once(signalled):
    *_, resumed, (optuna_trials, parents, runs) = signalled
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"search {NAME}: {TRIALS} completed, 0 pruned, 0 failed" in resumed.stdout
    assert not [t for t in optuna_trials if t.state == optuna.trial.TrialState.RUNNING]
    # N counted trials (the ones closed as interrupted are left out), N distinct configs.
    counted = [t for t in optuna_trials if t.user_attrs.get("stop_reason") != "interrupted"]
    assert [t.state for t in counted] == [optuna.trial.TrialState.COMPLETE] * TRIALS
    assert len({tuple(sorted(t.params.items())) for t in counted}) == TRIALS
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    trial_ids = [run.data.tags["metaxl.trial_id"] for run in runs]
    assert len(trial_ids) == len(set(trial_ids)) == TRIALS
    assert all(run.info.status == "FINISHED" for run in runs)
    configs = {float(run.data.params["meta_lr"]) for run in runs}
    assert len(configs) == TRIALS and configs == {t.params["meta_lr"] for t in counted}
