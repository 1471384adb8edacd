"""`metaxl-tune search` end to end: real local Ray, real MLflow (sqlite store and a server)."""

from __future__ import annotations

import collections
import json
import signal
import subprocess
import time

import optuna
import pytest
from mlflow.tracking import MlflowClient

from metaxl_tune.mlflow_filters import tags_equal
from metaxl_tune.search.runner import optuna_storage
from processes import CLI, MlflowServer, cli_env, kill_session, run_cli

DEMO = ["search", "--task", "ner", "--target", "tk", "--preset", "demo"]


def trial_runs(client: MlflowClient, search: str):
    experiment = client.get_experiment_by_name("metaxl-tune")
    query = tags_equal({"metaxl.search": search})
    runs = client.search_runs([experiment.experiment_id], filter_string=query, max_results=1000)
    parents = [run for run in runs if run.data.tags.get("metaxl.role") == "search"]
    trials = [run for run in runs if run.data.tags.get("metaxl.role") == "trial"]
    return parents, trials


def study_of(directory, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=optuna_storage(directory / 'metaxl-searches' / name))


@pytest.fixture(scope="module")
def demo_search(tmp_path_factory, shared_cache):
    workdir = tmp_path_factory.mktemp("demo-search")
    result = run_cli([*DEMO, "--num-samples", "6", "--name", "demo"], cwd=workdir, cache_dir=shared_cache)
    assert result.returncode == 0, result.stdout + result.stderr
    return workdir, result


def test_demo_search_logs_one_parent_and_six_finished_nested_runs(demo_search):
    workdir, _ = demo_search
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    parents, trials = trial_runs(client, "demo")
    assert len(parents) == 1 and len(trials) == 6
    assert all(run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for run in trials)
    assert {run.info.status for run in [*parents, *trials]} <= {"FINISHED", "KILLED"}
    for run in trials:
        assert {"meta_lr", "rtn_bottleneck", "rtn_layers", "source"} <= set(run.data.params)
        assert run.data.tags["metaxl.node_id"]
        assert "best_dev_f1" in run.data.metrics
    # Trials share the machine's two CPU slots: some of them ran at the same time.
    spans = sorted((run.info.start_time, run.info.end_time) for run in trials)
    assert any(later_start < earlier_end for (_, earlier_end), (later_start, _) in zip(spans, spans[1:]))
    assert {"plots/optimization_history.png"} <= {
        artifact.path for artifact in client.list_artifacts(parents[0].info.run_id, "plots")
    }


# One trial at a time, with two learning rates whose epoch-1 dev F1 differs (the untrained
# lr 1e-12 model scores 5.4 at epoch 1; lr 3e-3 scores lower there, before it has learnt the
# entities). ASHA (reduction factor 2) stops a trial whose epoch-1 score is below the median of
# the earlier trials': with the seeded sampler's order (1e-12, 3e-3, ...) a trial is pruned
# whatever the scores of the demo space (whose TPE trials may all improve on one another).
PRUNING_SPACE = """
metric: best_dev_f1
mode: max
fixed: {method: jt, epochs: 2, source_size: 300, target_size: 100, batch_size: 16, max_length: 32}
parameters:
  lr: {type: categorical, values: [3.0e-3, 1.0e-12]}
"""


@pytest.fixture(scope="module")
def pruning_search(tmp_path_factory, shared_cache):
    workdir = tmp_path_factory.mktemp("pruning-search")
    (workdir / "space.yaml").write_text(PRUNING_SPACE)
    result = run_cli(["search", "--task", "ner", "--target", "tk", "--model", "tiny", "--data", "synthetic",
                      "--space", "space.yaml", "--num-samples", "5", "--max-concurrent", "1", "--name", "pruning"],
                     cwd=workdir, cache_dir=shared_cache)
    assert result.returncode == 0, result.stdout + result.stderr
    return workdir, result


def test_pruned_trials_are_pruned_in_optuna_and_killed_in_mlflow(pruning_search):
    workdir, result = pruning_search
    study = study_of(workdir, "pruning")
    states = [trial.state for trial in study.trials]
    assert len(states) == 5
    pruned = states.count(optuna.trial.TrialState.PRUNED)
    assert pruned >= 1, result.stdout
    _, trials = trial_runs(MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}"), "pruning")
    outcomes = [run.data.tags["metaxl.outcome"] for run in trials]
    assert outcomes.count("pruned") == pruned
    assert all(run.info.status == "KILLED" for run in trials if run.data.tags["metaxl.outcome"] == "pruned")
    assert f"{pruned} pruned" in result.stdout


def test_best_exports_a_config_that_train_reproduces(demo_search, shared_cache):
    workdir, _ = demo_search
    exported = run_cli(["best", "--name", "demo", "--top", "3", "-o", "best.yaml"], cwd=workdir, cache_dir=shared_cache)
    assert exported.returncode == 0, exported.stderr
    assert "top 3 of 6 trials by best_dev_f1" in exported.stdout
    trained = subprocess.run(
        [*CLI, "train", "--config", "best.yaml", "--output", "repro", "--no-progress"],
        cwd=workdir, env={**cli_env(shared_cache), "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600,
    )
    assert trained.returncode == 0, trained.stderr
    reproduced = json.loads((workdir / "repro" / "results.json").read_text())["best_dev_f1"]
    _, trials = trial_runs(MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}"), "demo")
    best = max(run.data.metrics["best_dev_f1"] for run in trials)
    assert reproduced == pytest.approx(best, abs=1e-9)


def test_peak_memory_is_logged_every_epoch_and_shown_by_best(demo_search, shared_cache):
    workdir, _ = demo_search
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    _, trials = trial_runs(client, "demo")
    for run in trials:
        peaks = client.get_metric_history(run.info.run_id, "peak_memory_mib")
        epochs = client.get_metric_history(run.info.run_id, "dev_f1")
        assert len(peaks) == len(epochs) >= 1 and all(metric.value > 0 for metric in peaks)
    shown = subprocess.run(
        [*CLI, "best", "--name", "demo", "--top", "6"], cwd=workdir,
        env={**cli_env(shared_cache), "COLUMNS": "250"}, capture_output=True, text=True, timeout=300,
    )
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    # The header wraps to the column's width: "peak" over "MiB".
    header = lines[: next(i for i, line in enumerate(lines) if line.startswith("-"))]
    assert any("peak" in line for line in header) and any("MiB" in line for line in header)
    # best shows trial ids without the prefix they all share (abc12_00003 -> 00003).
    for run in trials:
        short = run.data.tags["metaxl.trial_id"].rsplit("_", 1)[-1]
        row = next(line.split() for line in lines if short in line.split())
        assert str(round(run.data.metrics["peak_memory_mib"])) in row


def test_search_logs_to_a_real_mlflow_server(tmp_path, shared_cache):
    server = MlflowServer(tmp_path)
    try:
        result = run_cli([*DEMO, "--num-samples", "2", "--name", "served", "--tracking-uri", server.uri],
                         cwd=tmp_path, cache_dir=shared_cache)
        assert result.returncode == 0, result.stdout + result.stderr
        parents, trials = trial_runs(MlflowClient(server.uri), "served")
        assert len(parents) == 1 and len(trials) == 2
        assert all(run.info.status in {"FINISHED", "KILLED"} for run in [*parents, *trials])
        assert not (tmp_path / "mlflow.db").exists()
    finally:
        server.stop()


def test_resume_after_the_driver_is_killed_runs_every_trial_once(tmp_path, shared_cache):
    args = [*DEMO, "--num-samples", "5", "--name", "killed", "--scheduler", "fifo"]
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

    resumed = run_cli(["search", "--name", "killed", "--resume"], cwd=tmp_path, cache_dir=shared_cache)
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
    assert {float(run.data.params["meta_lr"]) for run in trials if run not in kept} <= unrun


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--address", "127.0.0.1:9"], "cannot reach a Ray head at 127.0.0.1:9"),
        (["--tracking-uri", "http://127.0.0.1:9"], "cannot reach the MLflow tracking server at http://127.0.0.1:9"),
        (["--space", "nope"], "nope: unknown search space"),
        (["--meta-lr", "1e-5"], "meta_lr is searched by the space; drop --meta-lr"),
        (["--preset", "huge"], "--preset huge: unknown preset; known: demo"),
        (["--storage-retry-s", "-1"], "--storage-retry-s must be >= 0 seconds (got -1.0)"),
    ],
)
def test_bad_requests_fail_fast_with_one_line(tmp_path, shared_cache, extra, message):
    started = time.monotonic()
    result = run_cli([*DEMO, "--num-samples", "2", *extra], cwd=tmp_path, cache_dir=shared_cache, timeout=120)
    assert result.returncode == 2
    assert message in result.stderr and result.stderr.strip().count("\n") == 0
    assert time.monotonic() - started < 60
    assert not (tmp_path / "metaxl-searches").exists()


def test_space_typo_names_file_and_key(tmp_path, shared_cache):
    space = tmp_path / "my.yaml"
    space.write_text("parameters:\n  meta_lr: {type: loguniform, low: 1.0e-3, high: 1.0e-5}\n")
    result = run_cli(["search", "--task", "ner", "--target", "tk", "--model", "tiny", "--data", "synthetic",
                      "--space", str(space)], cwd=tmp_path, cache_dir=shared_cache, timeout=120)
    assert result.returncode == 2
    assert "my.yaml: parameters.meta_lr.low: must be <= high" in result.stderr


def test_best_rerun_checks_the_winner_against_seed_noise(demo_search, shared_cache):
    workdir, _ = demo_search
    result = run_cli(["best", "--name", "demo", "--top", "1", "--rerun", "--seeds", "2"], cwd=workdir,
                     cache_dir=shared_cache)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Cost: " in result.stdout and "CPU-hours" in result.stdout
    assert "Mean ± std of best_dev_f1 over seeds (n = 2)" in result.stdout
    assert "2 of 2 runs completed" in result.stdout
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("metaxl-tune")
    reruns = client.search_runs([experiment.experiment_id], "tags.`metaxl.search` LIKE 'demo-rerun-%' and tags.`metaxl.role` = 'trial'")
    assert sorted(run.data.params["seed"] for run in reruns) == ["1", "2"]
    _, trials = trial_runs(client, "demo")
    winner = max(trials, key=lambda run: run.data.metrics["best_dev_f1"])
    assert {run.data.tags["metaxl.setting"] for run in reruns} == {winner.data.tags["metaxl.trial_id"]}


MULTI_SOURCE_SPACE = """
description: two source languages, strategies and RTN sets
metric: best_dev_f1
mode: max
fixed: {method: metaxl, epochs: 1, lr: 3.0e-3, batch_size: 4, target_size: 8, max_length: 16, rtn_bottleneck: 8}
parameters:
  source_strategy: {type: categorical, values: [sequential, bandit]}
  rtn_per_source: {type: categorical, values: [false, true], when: {source_strategy: sequential}}
"""


def test_two_source_search_logs_per_language_steps_and_used_sizes(tmp_path, shared_cache):
    from tests.helpers import write_panx

    for language, count in (("tk", 10), ("en", 30), ("tr", 25)):
        write_panx(tmp_path / "data", language, count)
    (tmp_path / "space.yaml").write_text(MULTI_SOURCE_SPACE)
    result = run_cli([*DEMO, "--space", "space.yaml", "--data", str(tmp_path / "data"), "--source", "en,tr",
                      "--source-size", "28", "--num-samples", "2", "--scheduler", "fifo", "--name", "multi"],
                     cwd=tmp_path, cache_dir=shared_cache)
    assert result.returncode == 0, result.stdout + result.stderr
    _, trials = trial_runs(MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}"), "multi")
    assert len(trials) == 2 and all(run.info.status == "FINISHED" for run in trials)
    for run in trials:
        params, metrics = run.data.params, run.data.metrics
        assert params["source"] == "en,tr" and params["source_size"] == "28"
        # tr holds 25 training sentences: the run records the 25 it used, not the 28 asked for.
        assert (params["used.source_size.en"], params["used.source_size.tr"]) == ("28", "25")
        assert (params["used.target_size"], params["used.dev_size"], params["used.test_size"]) == ("8", "10", "10")
        # An epoch is 7 + 7 steps (28 and 25 sentences in batches of 4); the bandit splits them its way.
        assert metrics["source_steps/en"] + metrics["source_steps/tr"] == 14.0
        if params["source_strategy"] == "sequential":
            assert (metrics["source_steps/en"], metrics["source_steps/tr"]) == (7.0, 7.0)
        else:
            assert metrics["source_weight/en"] + metrics["source_weight/tr"] == pytest.approx(1.0)
