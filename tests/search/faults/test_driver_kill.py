"""A search whose driver is killed outright (SIGKILL to its session, as a crashed machine or an
OOM killer ends it) and then resumed: every trial runs once, and Optuna and MLflow agree.
The driver starts its own local Ray, which dies with it (the session's shared head would
outlive the driver); moved here from tests/search/driver/test_search_cli.py, which shares the head."""

from __future__ import annotations

import collections
import signal
import subprocess
import time

import optuna
import pytest
from mlflow.tracking import MlflowClient

from search_runs import DEMO, MACHINERY_SIZES, study_of, trial_runs
from processes import CLI, cli_env, kill_session, run_cli



def test_resume_after_the_driver_is_killed_runs_every_trial_once(tmp_path, shared_cache, ray_head):
    args = [*DEMO, *MACHINERY_SIZES, "--num-samples", "5", "--name", "killed", "--scheduler", "fifo"]
    driver = subprocess.Popen([*CLI, *args], cwd=tmp_path, env=cli_env(shared_cache), start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline:
            time.sleep(2)
            try:
                study = study_of(tmp_path, "killed")
            except (KeyError, Exception):  # study not created yet
                continue
            if sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials) >= 2:
                break
        else:
            pytest.fail("two trials did not finish in time")
    finally:
        kill_session(driver.pid, signal.SIGKILL)
        driver.wait()
    done_before = {t.number for t in study_of(tmp_path, "killed").trials if t.state.is_finished()}

    # The resume joins the shared head: what is tested there is the records the kill left.
    resumed = run_cli(["search", "--name", "killed", "--resume"], cwd=tmp_path, cache_dir=shared_cache, ray=ray_head)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    study = study_of(tmp_path, "killed")
    ran = [t for t in study.trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]
    assert len(ran) == 5 and done_before <= {t.number for t in study.trials if t.state.is_finished()}
    assert all(t.state != optuna.trial.TrialState.RUNNING for t in study.trials)
    _, trials = trial_runs(MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}"), "killed")
    assert all(run.info.status in {"FINISHED", "KILLED"} for run in trials)
    # A trial proposed just before the kill, and never run, is closed as interrupted.
    kept = [run for run in trials if run.data.tags["metaxl.outcome"] != "interrupted"]
    trial_ids = [run.data.tags["metaxl.trial_id"] for run in kept]
    assert len(trial_ids) == len(set(trial_ids)) == 5
    # Each run ended as its Optuna trial did (matched by the sampled meta_lr; a trial proposed
    # again after the resume repeats the unrun one's values, as the sampler's state is restored).
    expected = {"completed": optuna.trial.TrialState.COMPLETE, "pruned": optuna.trial.TrialState.PRUNED}
    ran_in_optuna = collections.Counter((t.params["meta_lr"], t.state) for t in study.trials
                                        if t.user_attrs.get("stop_reason") != "interrupted")
    ran_in_mlflow = collections.Counter((float(run.data.params["meta_lr"]), expected[run.data.tags["metaxl.outcome"]])
                                        for run in kept)
    assert ran_in_optuna == ran_in_mlflow
    unrun = {t.params["meta_lr"] for t in study.trials if t.user_attrs.get("stop_reason") == "interrupted"}
    assert all(t.state == optuna.trial.TrialState.FAIL for t in study.trials if t.params["meta_lr"] in unrun
               and t.user_attrs.get("stop_reason") == "interrupted")
    # MLflow makes a run, then logs its params: a run the kill caught in between has none.
    assert {float(run.data.params["meta_lr"]) for run in trials
            if run not in kept and "meta_lr" in run.data.params} <= unrun
