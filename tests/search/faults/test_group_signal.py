"""A signal to the driver's whole process group, and SIGTERM to every process of the job.

SIGHUP to the group (a closed terminal, a dropped ssh session; `timeout` and batch systems send
SIGTERM the same way) ends a search as a signal to the driver alone does: Ray's own processes
run in a session of their own (cluster.ray_processes_in_their_own_session), so the driver can
still stop Tune gracefully, mark its runs, and shut them down.

SIGTERM to every process of the job one by one (Slurm's cgroup kill at a time limit), raylet
first, takes Ray's GCS server and raylet too, and Ray ends the driver at once: its supervisor
closes the records, releases the lock, says how to resume and exits 143
(common/supervision.py)."""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import subprocess
import time
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from metaxl_tune.results.mlflow_filters import tags_equal
from metaxl_tune.search.driver.lock import lock_path
from metaxl_tune.search.driver.options import optuna_storage
from processes import (
    CLI, FIRST_RESULT, cli_env, descendants, kill_session, process_start, read_until, run_cli, running_search_space,
    session_pids, supervised_driver, wait_for,
)

NAME = "group-signalled"
TRIALS = 2
# Three epochs: the signal (sent once a first epoch is reported) must find the trials still running.
SPACE = running_search_space(epochs=3)


def search_state(workdir: Path, name: str = NAME) -> tuple[list, list, list]:
    """(Optuna trials, parent runs, trial runs) of the search, from its journal and ./mlflow.db."""
    study = optuna.load_study(study_name=name, storage=optuna_storage(workdir / "metaxl-searches" / name))
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("metaxl-tune")
    runs = client.search_runs([experiment.experiment_id], tags_equal({"metaxl.search": name}), max_results=1000)
    return (study.trials, [run for run in runs if run.data.tags["metaxl.role"] == "search"],
            [run for run in runs if run.data.tags["metaxl.role"] == "trial"])


def start_search(workdir: Path, name: str, cache: Path) -> subprocess.Popen:
    """A search in a process group of its own (the driver leads it, as under `timeout` or in a
    batch job)."""
    (workdir / "space.yaml").write_text(SPACE)
    return subprocess.Popen(
        [*CLI, "search", "--task", "ner", "--target", "tk", "--model", "tiny", "--data", "synthetic",
         "--space", "space.yaml", "--name", name, "--num-samples", str(TRIALS), "--max-concurrent", "2",
         "--scheduler", "fifo", "--repeats", "1"],  # one seed per config: trials are told apart by their config
        cwd=workdir, env=cli_env(cache), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )


def left_running(processes: dict[int, int]) -> dict[int, int]:
    """Those of ``processes`` still running after a while (then killed, not to leak them into the
    rest of the session). ray.shutdown stops the raylet, which ends its workers; a worker sent
    SIGTERM ends on its own: give them a moment to exit."""
    try:
        wait_for(lambda: not any(process_start(pid) == start for pid, start in processes.items()),
                 timeout=60, what="Ray's processes to end")
        return {}
    except AssertionError:
        left = {pid: start for pid, start in processes.items() if process_start(pid) == start}
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        return left


@pytest.fixture(scope="module")
def signalled(tmp_path_factory, shared_cache, ray_head):
    """A search sent SIGHUP by group (its terminal closed) once a trial has reported an epoch;
    then resumed with --resume (on the session's shared Ray head: the signal is the stopped
    search's, with its own local Ray; the resume tests the search's records)."""
    workdir = tmp_path_factory.mktemp("group-signal")
    driver = start_search(workdir, NAME, shared_cache)
    try:
        before = read_until(driver, FIRST_RESULT, timeout=300)
        ray_processes = descendants(driver.pid)
        ray_processes.pop(supervised_driver(driver.pid))
        in_drivers_session = sorted(set(ray_processes) & set(session_pids(driver.pid)))
        signalled_at = time.monotonic()
        os.killpg(driver.pid, signal.SIGHUP)  # what a closing terminal does: kill(-pgid, SIGHUP)
        rest, _ = driver.communicate(timeout=300)
        seconds = time.monotonic() - signalled_at
        output = before + rest
    finally:
        kill_session(driver.pid)
        driver.wait()
    left = left_running(ray_processes)
    lock_left = lock_path(workdir / "metaxl-searches", NAME).exists()
    stopped = search_state(workdir)
    resumed = run_cli(["search", "--name", NAME, "--resume"], cwd=workdir, cache_dir=shared_cache, ray=ray_head)
    return (driver.returncode, output, seconds, ray_processes, in_drivers_session, left, lock_left, stopped, resumed,
            search_state(workdir))


def test_a_group_sighup_stops_the_search_like_a_signal_to_the_driver(signalled):
    returncode, output, seconds, *_ = signalled
    assert returncode == 129, output
    # The broken endings: SIGHUP killed the driver at once, with no line; a group signal that
    # reached the GCS left the driver waiting 60 s for it, then exiting 1.
    assert seconds < 30, f"{seconds:.0f} s\n{output}"
    assert "SIGHUP: starting no more trials" in output
    assert f"search {NAME} interrupted (SIGHUP); its state is saved. Resume with: metaxl-tune search --name {NAME} --resume" in output
    assert "Failed to connect to GCS" not in output and "Traceback" not in output, output


def test_ray_processes_left_the_drivers_group_and_none_outlives_the_driver(signalled):
    _, output, _, ray_processes, in_drivers_session, left, *_ = signalled
    # The GCS server, the raylet and their kin ran below the driver, in sessions other than its own.
    assert len(ray_processes) >= 2, output
    assert not in_drivers_session, f"in the driver's session: {in_drivers_session}"
    assert not left, f"still running after the driver ended: {sorted(left)}"


def check_nothing_running(state: tuple[list, list, list]) -> None:
    optuna_trials, parents, runs = state
    assert parents[0].info.status == "KILLED"
    assert runs and all(run.info.status != "RUNNING" for run in runs)
    assert any(run.data.tags.get("metaxl.outcome") == "interrupted" for run in runs)
    # The stopped trials' Optuna trials are closed as interrupted; the resume opens new ones.
    assert optuna_trials and all(t.state != optuna.trial.TrialState.RUNNING for t in optuna_trials)
    closed = [t for t in optuna_trials if t.state == optuna.trial.TrialState.FAIL]
    assert closed and all(t.user_attrs.get("stop_reason") == "interrupted" for t in closed)


def check_resumed(resumed: subprocess.CompletedProcess, name: str, state: tuple[list, list, list]) -> None:
    optuna_trials, parents, runs = state
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"search {name}: {TRIALS} completed, 0 pruned, 0 failed" in resumed.stdout
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


def test_nothing_is_left_running_in_mlflow_or_optuna_and_the_lock_is_released(signalled):
    *_, lock_left, stopped, _, _ = signalled
    assert not lock_left
    check_nothing_running(stopped)


def test_resume_after_a_group_sighup_finishes_every_trial_once(signalled):
    *_, resumed, state = signalled
    check_resumed(resumed, NAME, state)


# ---- SIGTERM to every process of the job, one by one --------------------------------------------

JOB = "job-killed"
# Ray's native lines, as its C++ logger writes them: "[2026-12-07 03:30:12,893 E 5364 6040] file.cc:204: ..."
RAY_NATIVE_LINE = re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ [DIWEF] \d+ \d+\]", re.MULTILINE)


def command_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace").rsplit("/", 1)[-1]
    except OSError:
        return "?"


@pytest.fixture(scope="module")
def job_killed(tmp_path_factory, shared_cache, ray_head):
    """A search whose every process (the driver, Ray's GCS server, raylet, agents, log monitor
    and trial workers) is sent SIGTERM one by one in a shuffled order once a trial has reported
    an epoch, as Slurm's cgroup kill does; then resumed with --resume (on the shared head)."""
    workdir = tmp_path_factory.mktemp("job-kill")
    driver = start_search(workdir, JOB, shared_cache)
    try:
        before = read_until(driver, FIRST_RESULT, timeout=300)
        ray_processes = descendants(driver.pid)
        child = supervised_driver(driver.pid)
        ray_only = [pid for pid in ray_processes if pid != child]
        # The order in which Ray wins: its raylet first, which ends the driver from Ray's native
        # code with _Exit(1) (no Python runs); the job's SIGTERM reaches the supervisor and the
        # driver 0.3 s later. The order in which the driver hears it first is test_ray_loss.py's.
        raylets = [pid for pid in ray_only if command_name(pid) == "raylet"]
        first = raylets + sorted(set(ray_only) - set(raylets), key=lambda _: random.random())
        names = [command_name(pid) for pid in first] + ["(0.3 s)", "supervisor", "driver"]
        signalled_at = time.monotonic()
        for pid in first:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        time.sleep(0.3)
        for pid in (driver.pid, child):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        rest, _ = driver.communicate(timeout=300)
        seconds = time.monotonic() - signalled_at
    finally:
        kill_session(driver.pid)
        driver.wait()
    left_running(ray_processes)
    lock_left = lock_path(workdir / "metaxl-searches", JOB).exists()
    stopped = search_state(workdir, JOB)
    resumed = run_cli(["search", "--name", JOB, "--resume"], cwd=workdir, cache_dir=shared_cache, ray=ray_head)
    return driver.returncode, before, rest, seconds, names, lock_left, stopped, resumed, search_state(workdir, JOB)


def test_a_job_kill_ends_the_search_with_143_within_30_s_and_one_line(job_killed):
    returncode, before, rest, seconds, names, *_ = job_killed
    said = f"signalled in this order: {names}; {seconds:.1f} s\n{before + rest}"
    # The broken ending: the driver waited 60 s for the GCS, then Ray ended it with exit 1 and its own line.
    assert returncode == 143, said
    assert seconds < 30, said
    lines = [line for line in rest.splitlines() if line.strip() and not line.startswith("[search] ")]
    ending = f"search {JOB} interrupted (SIGTERM"
    assert [line for line in lines if line.startswith(ending)] == lines[-1:], said
    assert f"Resume with: metaxl-tune search --name {JOB} --resume" in lines[-1], said
    # Before it, at most the stop's own line (when the driver's handler ran before Ray was found gone).
    assert all(line.startswith("SIGTERM: starting no more trials") for line in lines[:-1]), said
    assert not RAY_NATIVE_LINE.search(before + rest) and "Traceback" not in rest, said


def test_a_job_kill_leaves_nothing_running_and_releases_the_lock(job_killed):
    *_, lock_left, stopped, _, _ = job_killed
    assert not lock_left
    check_nothing_running(stopped)


def test_resume_after_a_job_kill_finishes_every_trial_once(job_killed):
    *_, resumed, state = job_killed
    check_resumed(resumed, JOB, state)
