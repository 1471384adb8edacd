"""The first Ctrl-C or SIGTERM asks Tune for its graceful stop; the second stops at once."""

from __future__ import annotations

import os
import signal

import optuna
import pytest

from metaxl_tune.results.mlflow_filters import tags_equal
from metaxl_tune.search.faults.interrupt import Interruption, stopped_line
from processes import running_search_space


def tune_loop_started(stops: list):
    """What Tune's loop does when it starts: its stop handler on SIGUSR1."""
    signal.signal(signal.SIGUSR1, lambda signum, frame: stops.append(signum))


@pytest.mark.parametrize("first", [signal.SIGINT, signal.SIGTERM])
def test_the_first_signal_asks_tune_to_stop_and_the_second_stops_at_once(first):
    stops, said = [], []
    # Whatever handlers were there before (an in-process ray.init installs its own SIGTERM one).
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with Interruption(say=said.append) as interruption:
        tune_loop_started(stops)
        os.kill(os.getpid(), first)
        assert stops == [first] and interruption.signal_name == first.name
        assert said[0].startswith(f"{first.name}: starting no more trials, saving the search state")
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert said[1].startswith("SIGINT again: stopping at once")
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_a_failed_last_save_during_a_stop_is_said_on_one_line_without_its_traceback(capsys):
    import logging

    ray_logger = logging.getLogger("ray.tune.execution.experiment_state")
    handler = logging.StreamHandler()  # Ray's own handler writes the driver's stderr like this
    ray_logger.addHandler(handler)
    # An in-process search earlier in the session (quiet_output.py) leaves its own one-line
    # filter on this logger for good; this test is about the interruption's.
    kept_filters = list(ray_logger.filters)
    for kept in kept_filters:
        ray_logger.removeFilter(kept)
    try:
        with Interruption(say=lambda _: None):
            tune_loop_started([])
            os.kill(os.getpid(), signal.SIGINT)
            try:
                raise FileNotFoundError("trial_1/result.json")
            except FileNotFoundError:
                ray_logger.error("Saving experiment state to storage at 'x' failed with exception: ", exc_info=True)
        assert not ray_logger.filters
    finally:
        ray_logger.removeHandler(handler)
        for kept in kept_filters:
            ray_logger.addFilter(kept)
    err = capsys.readouterr().err
    assert err == "Saving experiment state to storage at 'x' failed with exception: FileNotFoundError: trial_1/result.json\n"


def test_a_signal_before_tune_runs_stops_at_once():
    with pytest.raises(KeyboardInterrupt), Interruption(say=lambda _: None) as interruption:
        os.kill(os.getpid(), signal.SIGTERM)
    assert interruption.signal_name == "SIGTERM"


def test_no_signal_means_the_search_ran_to_its_end():
    with Interruption(say=lambda _: None) as interruption:
        tune_loop_started([])
    assert not interruption.interrupted and os.environ["TUNE_DISABLE_SIGINT_HANDLER"] == "1"



def test_a_stop_at_once_says_how_to_resume_only_when_there_is_something_to_resume(tmp_path):
    assert stopped_line("search", "s", str(tmp_path), "metaxl-search.json") == (
        "interrupted before the search started; nothing to resume")
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "metaxl-search.json").write_text("{}")
    assert stopped_line("search", "s", str(tmp_path), "metaxl-search.json") == (
        f"interrupted; resume with: metaxl-tune search --name s --resume --storage {tmp_path}")

# ---- end to end: real Ray, a real MLflow server ------------------------------------------------

# Six epochs: the signal (sent once a first epoch is reported) must find the trials still running.
SPACE = running_search_space(epochs=6)
TRIALS = 3


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from processes import MlflowServer

    server = MlflowServer(tmp_path_factory.mktemp("interrupt-mlflow"))
    yield server
    server.stop()


def search_state(uri: str, workdir, name: str) -> tuple[list, list, list]:
    """(Optuna trials, parent runs, trial runs) of a search."""
    from mlflow.tracking import MlflowClient

    from metaxl_tune.search.driver.options import optuna_storage

    study = optuna.load_study(study_name=name, storage=optuna_storage(workdir / "metaxl-searches" / name))
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("metaxl-tune")
    runs = client.search_runs([experiment.experiment_id], tags_equal({"metaxl.search": name}), max_results=1000)
    return (study.trials, [run for run in runs if run.data.tags["metaxl.role"] == "search"],
            [run for run in runs if run.data.tags["metaxl.role"] == "trial"])


def counted_trials(optuna_trials: list) -> list:
    """The Optuna trials a search counts, each checked: those closed as interrupted are left
    out, and each is continued by exactly one trial of the resumed search, with its params."""
    closed = {t.number: t for t in optuna_trials if t.user_attrs.get("stop_reason") == "interrupted"}
    continuing = [t for t in optuna_trials if "resumes_trial" in t.user_attrs]
    assert sorted(t.user_attrs["resumes_trial"] for t in continuing) == sorted(closed)
    assert all(t.params == closed[t.user_attrs["resumes_trial"]].params for t in continuing)
    return [t for t in optuna_trials if t.number not in closed]


@pytest.fixture(scope="module", params=["SIGINT", "SIGTERM"])
def interrupted(request, server, tmp_path_factory, shared_cache, ray_head):
    """A search stopped once a trial has saved an epoch: SIGINT to the driver's whole process
    group (what Ctrl-C in a terminal does), SIGTERM to the driver alone (what a process
    manager does); then resumed with --resume, on the session's shared Ray head (the stopped
    search ran on a local Ray of its own, which the signal reached)."""
    import subprocess

    from processes import CLI, FIRST_RESULT, cli_env, kill_session, read_until, run_cli

    name = f"stopped-{request.param.lower()}"
    workdir = tmp_path_factory.mktemp(name)
    (workdir / "space.yaml").write_text(SPACE)
    driver = subprocess.Popen(
        [*CLI, "search", "--task", "ner", "--target", "tk", "--model", "tiny", "--data", "synthetic",
         "--space", "space.yaml", "--name", name, "--num-samples", str(TRIALS), "--max-concurrent", "2",
         "--scheduler", "fifo", "--tracking-uri", server.uri,
         "--repeats", "1"],  # one seed per config: trials are told apart by their config
        cwd=workdir, env=cli_env(shared_cache), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )
    try:
        before = read_until(driver, FIRST_RESULT, timeout=300)
        if request.param == "SIGINT":
            kill_session(driver.pid, signal.SIGINT)
        else:
            driver.send_signal(signal.SIGTERM)
        rest, _ = driver.communicate(timeout=300)
        output = before + rest
    finally:
        kill_session(driver.pid)
        driver.wait()
    stopped = search_state(server.uri, workdir, name)
    resumed = run_cli(["search", "--name", name, "--resume"], cwd=workdir, cache_dir=shared_cache, ray=ray_head)
    return request.param, name, driver.returncode, output, stopped, resumed, search_state(server.uri, workdir, name)


def test_an_interrupted_search_exits_128_plus_the_signal_says_how_to_resume_and_leaves_nothing_running(interrupted):
    signal_name, name, returncode, output, (optuna_trials, parents, runs), _, _ = interrupted
    assert returncode == 128 + signal.Signals[signal_name], output
    assert f"{signal_name}: starting no more trials" in output
    assert f"Resume with: metaxl-tune search --name {name} --resume" in output
    assert "Traceback" not in output, output
    # The stopped trials' Optuna trials are closed as interrupted (the resume opens new ones);
    # any other trial finished.
    assert optuna_trials and all(t.state != optuna.trial.TrialState.RUNNING for t in optuna_trials)
    closed = [t for t in optuna_trials if t.state == optuna.trial.TrialState.FAIL]
    assert closed and all(t.user_attrs.get("stop_reason") == "interrupted" for t in closed)
    assert parents[0].info.status == "KILLED"
    assert all(run.info.status != "RUNNING" for run in runs)
    assert any(run.data.tags.get("metaxl.outcome") == "interrupted" for run in runs)


def test_resume_finishes_exactly_the_trials_asked_once_each_with_optuna_and_mlflow_agreeing(interrupted):
    _, name, _, _, _, resumed, (optuna_trials, parents, runs) = interrupted
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"search {name}: {TRIALS} completed, 0 pruned, 0 failed" in resumed.stdout
    optuna_trials = counted_trials(optuna_trials)
    assert [t.state for t in optuna_trials] == [optuna.trial.TrialState.COMPLETE] * TRIALS
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    trial_ids = [run.data.tags["metaxl.trial_id"] for run in runs]
    assert len(trial_ids) == len(set(trial_ids)) == TRIALS
    assert all(run.info.status == "FINISHED" and run.data.tags["metaxl.outcome"] == "completed" for run in runs)
    # Each Optuna trial is the MLflow run with its sampled value, and both hold the same score.
    by_value = {float(run.data.params["meta_lr"]): run for run in runs}
    for trial in optuna_trials:
        assert by_value[trial.params["meta_lr"]].data.metrics["best_dev_f1"] == pytest.approx(trial.value)


def test_a_resumed_trial_is_said_once_and_logs_each_epoch_once_counting_the_interrupted_attempt(
        interrupted, server, tmp_path_factory):
    from mlflow.tracking import MlflowClient

    from processes import tune_results

    _, name, _, _, (_, _, stopped_runs), resumed, (_, _, runs) = interrupted
    (workdir,) = [path for path in tmp_path_factory.getbasetemp().glob(f"{name}*") if not path.is_symlink()]
    # Tune's result.json of a restored trial holds only its new attempt; the lost one is in MLflow.
    rows = tune_results(workdir / "metaxl-searches" / name)
    # Stopped after an epoch and before any checkpoint (every 10 minutes by default): started again from epoch 1.
    lost = {run.data.tags["metaxl.trial_id"]: run.data.metrics["wall_seconds"] for run in stopped_runs
            if run.data.tags.get("metaxl.outcome") == "interrupted" and "wall_seconds" in run.data.metrics}
    assert lost
    said = [line for line in resumed.stdout.splitlines() if " resumes, stopped after epoch " in line]
    assert sorted(line.split()[2] for line in said) == sorted(lost), resumed.stdout
    assert all(line.endswith("no checkpoint yet, so it starts again from epoch 1; redone epochs are logged once, "
                             "their time is counted") for line in said)
    output = resumed.stdout + resumed.stderr
    assert "Traceback" not in output and "\x1b[" not in output and "\N{RUNNER}" not in output, output
    client = MlflowClient(server.uri)
    by_trial = {run.data.tags["metaxl.trial_id"]: run for run in runs}
    for trial_id, lost_seconds in lost.items():
        run, new = by_trial[trial_id], rows[trial_id]
        assert new[0]["epoch"] == 1 and new[-1]["epoch"] == new[-1]["epochs_total"]
        history = sorted(client.get_metric_history(run.info.run_id, "dev_f1"), key=lambda metric: metric.timestamp)
        assert [metric.step for metric in history] == list(range(1, new[-1]["epochs_total"] + 1))
        assert run.data.metrics["wall_seconds"] >= lost_seconds + new[-1]["attempt_seconds"] - 1e-6


def test_the_parents_counts_hold_one_value_per_step_across_the_resume(interrupted, server):
    from mlflow.tracking import MlflowClient

    _, _, _, _, (_, stopped_parents, _), _, (_, parents, _) = interrupted
    client = MlflowClient(server.uri)
    (parent,) = parents
    for key in ("trials_completed", "trials_pruned", "trials_failed", "trials_total"):
        history = client.get_metric_history(parent.info.run_id, key)
        # The stopped driver's counts at step 0, the resumed one's at step 1 (MLflow keeps both
        # values of a step written twice, and `best` would read either).
        assert sorted(metric.step for metric in history) == [0, 1], (key, history)
        assert {metric.step: metric.value for metric in history}[0] == stopped_parents[0].data.metrics[key]
    assert parent.data.metrics["trials_completed"] == TRIALS
