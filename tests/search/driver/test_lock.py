"""One driver per search (driver_lock.py), and one creator of a new MLflow sqlite store. The
search that wins the lock joins the session's shared Ray head (conftest.ray_head)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

import optuna
import pytest
from mlflow.tracking import MlflowClient

from metaxl_tune.results.mlflow_filters import tags_equal
from metaxl_tune.search.driver.lock import SearchLockedError, driver_lock, lock_path
from metaxl_tune.search.driver.options import optuna_storage
from processes import FIRST_RESULT, cli_env, kill_session, read_until, run_cli, running_search_space, wait_for

NAME = "locked"
TRIALS = 2
# Four epochs a trial, one trial at a time: the search still runs when --resume is tried.
SPACE = running_search_space(epochs=4)
# A driver that has loaded the CLI, says so, and waits on a pipe: once every driver has said
# it waits, closing the pipe's write end releases them at the same moment (a barrier, not a sleep).
AT_THE_BARRIER = """
import os, sys
from metaxl_tune.cli.app import main
print("at the barrier", flush=True)
os.read(int(sys.argv[1]), 1)
sys.argv = ["metaxl-tune", *sys.argv[2:]]
main()
"""


def dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def release_together(processes: list[subprocess.Popen], barrier_write: int) -> None:
    for process in processes:
        before = []  # what a process printed while loading (warnings)
        while (line := process.stdout.readline()).strip() != "at the barrier":
            assert line, "".join(before)
            before.append(line)
    os.close(barrier_write)


def one_line_error(result_output: str) -> str:
    lines = [line for line in result_output.splitlines() if line.strip()]
    assert len(lines) == 1, result_output
    return lines[0]


@pytest.fixture(scope="module")
def two_drivers(tmp_path_factory, shared_cache, ray_head):
    """Two `search --name locked` released together through a barrier, over a lock file left by
    a driver that died; while the winner runs, a `--resume` of it is tried."""
    workdir = tmp_path_factory.mktemp("driver-lock")
    (workdir / "space.yaml").write_text(SPACE)
    stale = {"host": socket.gethostname(), "pid": dead_pid(), "command": "search", "started": "earlier"}
    (workdir / "metaxl-searches").mkdir()
    lock_path(workdir / "metaxl-searches", NAME).write_text(json.dumps(stale) + "\n")
    barrier_read, barrier_write = os.pipe()
    args = ["search", "--task", "ner", "--target", "tk", "--model", "tiny", "--data", "synthetic", "--space",
            "space.yaml", "--name", NAME, "--num-samples", str(TRIALS), "--max-concurrent", "1", "--scheduler", "fifo",
            *ray_head.flags]
    drivers = [
        subprocess.Popen([sys.executable, "-c", AT_THE_BARRIER, str(barrier_read), *args], pass_fds=(barrier_read,),
                         cwd=workdir, env=cli_env(shared_cache, ray_head), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, start_new_session=True)
        for _ in range(2)
    ]
    os.close(barrier_read)
    try:
        release_together(drivers, barrier_write)
        loser = wait_for(lambda: next((d for d in drivers if d.poll() is not None), None), timeout=300,
                         what="one of the two drivers to be refused")
        winner = next(d for d in drivers if d is not loser)
        loser_output, _ = loser.communicate()
        before = read_until(winner, FIRST_RESULT, timeout=300)
        resume = run_cli(["search", "--name", NAME, "--resume"], cwd=workdir, cache_dir=shared_cache, timeout=300)
        rest, _ = winner.communicate(timeout=900)
        winner_output = before + rest
    finally:
        for driver in drivers:
            # Not the refused driver, reaped minutes ago: its pid, free since, may be another
            # process's by now (a running driver's pid cannot be reused).
            if driver.returncode is None:
                kill_session(driver.pid)
                driver.wait()
    return workdir, stale, (winner.pid, winner.returncode, winner_output), (loser.returncode, loser_output), resume


def test_of_two_drivers_started_together_one_runs_and_the_other_is_refused_naming_it(two_drivers):
    _, _, (winner_pid, _, _), (returncode, output), _ = two_drivers
    assert returncode == 2, output
    line = one_line_error(output)
    assert line.startswith(f"error: search {NAME} is being run by pid {winner_pid} on host {socket.gethostname()}")
    assert "--resume" in line


def test_the_search_that_holds_the_lock_finishes_exactly_its_trials_and_removes_the_lock(two_drivers):
    workdir, _, (_, returncode, output), _, _ = two_drivers
    assert returncode == 0, output
    assert f"search {NAME}: {TRIALS} completed, 0 pruned, 0 failed" in output
    study = optuna.load_study(study_name=NAME, storage=optuna_storage(workdir / "metaxl-searches" / NAME))
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * TRIALS
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("metaxl-tune")
    runs = client.search_runs([experiment.experiment_id], tags_equal({"metaxl.search": NAME}))
    assert sorted(run.data.tags["metaxl.role"] for run in runs) == ["search"] + ["trial"] * TRIALS
    assert not lock_path(workdir / "metaxl-searches", NAME).exists()


def test_a_lock_left_by_a_dead_driver_is_taken_over_with_a_note(two_drivers):
    _, stale, (_, _, output), _, _ = two_drivers
    notes = [line for line in output.splitlines() if line.startswith("note: search locked: taking over the lock")]
    assert len(notes) == 1, output
    assert f"left by pid {stale['pid']} on host {stale['host']}, which is no longer running" in notes[0]


def test_resume_while_the_driver_runs_is_refused_naming_it(two_drivers):
    _, _, (winner_pid, _, _), _, resume = two_drivers
    assert resume.returncode == 2, resume.stdout + resume.stderr
    line = one_line_error(resume.stdout + resume.stderr)
    assert line.startswith(f"error: search {NAME} is being run by pid {winner_pid} on host {socket.gethostname()}")


# ---- the lock itself, in one process (flock: two opens of one file exclude each other) -------------

def test_a_held_lock_refuses_a_second_holder_and_is_free_again_once_released(tmp_path):
    said = []
    with driver_lock(tmp_path, "s", command="search", log=said.append):
        holder = json.loads(lock_path(tmp_path, "s").read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        with pytest.raises(SearchLockedError, match=f"search s is being run by pid {os.getpid()} on host"):
            with driver_lock(tmp_path, "s", command="search", log=said.append):
                pass
        with driver_lock(tmp_path, "other", command="search", log=said.append):
            pass  # another name is another lock
    assert not lock_path(tmp_path, "s").exists()
    with driver_lock(tmp_path, "s", command="search", log=said.append):
        pass
    assert said == []  # a lock released by its holder leaves nothing to take over


def test_a_driver_ending_without_unwinding_releases_the_lock_through_its_handle(tmp_path):
    """ray_loss.py: the driver's last act before os._exit, from a thread other than the holder's."""
    import threading

    with driver_lock(tmp_path, "s", command="search") as held:
        releaser = threading.Thread(target=held.release)
        releaser.start()
        releaser.join()
        assert not lock_path(tmp_path, "s").exists()
        said = []
        with driver_lock(tmp_path, "s", command="search", log=said.append):
            assert said == []  # free, and nothing left behind to take over
        held.release()  # once is enough: a second release leaves the next holder alone
    assert not lock_path(tmp_path, "s").exists()


def test_resume_in_a_drivers_first_seconds_names_the_driver_not_a_missing_search(tmp_path):
    """A driver that holds the lock has not written its options file yet."""
    from typer.testing import CliRunner

    from metaxl_tune.cli.app import app

    with driver_lock(tmp_path, "s", command="search", log=print):
        result = CliRunner().invoke(app, ["search", "--name", "s", "--resume", "--storage", str(tmp_path)])
    assert result.exit_code == 2, result.output
    line = one_line_error(result.output)
    assert line.startswith(f"error: search s is being run by pid {os.getpid()} on host {socket.gethostname()}"), line


def test_a_lock_whose_holder_was_killed_is_free(tmp_path):
    """The kernel drops a flock when its holder dies, however it dies."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom metaxl_tune.search.driver.lock import driver_lock\n"
         "with driver_lock(sys.argv[1], 's', command='search'):\n    print('held', flush=True)\n    time.sleep(600)\n",
         str(tmp_path)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(SearchLockedError, match=f"pid {holder.pid} on host"):
            with driver_lock(tmp_path, "s", command="search"):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    said = []
    with driver_lock(tmp_path, "s", command="search", log=said.append):
        pass
    assert len(said) == 1 and f"left by pid {holder.pid} on host" in said[0]


# ---- a new MLflow store opened by two processes at once ------------------------------------------------

# Loads MLflow, waits at the pipe barrier, then opens the store as a search's tracker does.
OPEN_STORE = """
import os, sys
from metaxl_tune.results.tracking import Tracker
print("at the barrier", flush=True)
os.read(int(sys.argv[1]), 1)
Tracker(sys.argv[2], "any").client.search_experiments()
print("ok")
"""


def test_two_processes_opening_a_new_sqlite_store_at_once_both_succeed(tmp_path):
    # Without the creation lock, MLflow's table creation and migrations race on the new file
    # (`table ... already exists`, `duplicate column name`) and one process fails with a traceback.
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    barrier_read, barrier_write = os.pipe()
    openers = [subprocess.Popen([sys.executable, "-c", OPEN_STORE, str(barrier_read), uri], pass_fds=(barrier_read,),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for _ in range(2)]
    os.close(barrier_read)
    try:
        release_together(openers, barrier_write)
        outputs = [opener.communicate(timeout=300)[0] for opener in openers]
    finally:
        for opener in openers:
            opener.kill()
            opener.wait()
    assert [opener.returncode for opener in openers] == [0, 0], outputs
    assert all(output.splitlines()[-1] == "ok" for output in outputs), outputs


# Opens two new stores as a search's tracker does: without --verbose, then with it.
OPEN_NEW_STORES = """
import sys
from metaxl_tune.results.tracking import Tracker
Tracker(sys.argv[1], "any").client.search_experiments()
print("verbose from here", file=sys.stderr, flush=True)
Tracker(sys.argv[2], "any", verbose=True).client.search_experiments()
"""


def test_mlflows_lines_about_creating_a_new_store_show_only_with_verbose(tmp_path):
    opened = subprocess.run([sys.executable, "-c", OPEN_NEW_STORES, f"sqlite:///{tmp_path / 'quiet.db'}",
                             f"sqlite:///{tmp_path / 'verbose.db'}"], capture_output=True, text=True, timeout=300)
    assert opened.returncode == 0, opened.stdout + opened.stderr
    quiet, verbose = opened.stderr.split("verbose from here\n")
    assert "database tables" not in quiet and "Creating initial MLflow database tables" in verbose, opened.stderr
