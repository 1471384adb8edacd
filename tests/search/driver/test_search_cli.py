"""`metaxl-tune search` end to end: real Ray (the session's shared head, joined with --address;
conftest.ray_head), real MLflow (sqlite store and a server). A search that starts its own local
Ray, and one whose driver is killed, are in tests/search/faults/."""

from __future__ import annotations

import collections
import json
import subprocess
import time

import optuna
import pytest
from mlflow.tracking import MlflowClient

from metaxl_tune.results.config_ranking import ranked_configs
from metaxl_tune.results.tracking import Tracker
from search_runs import DEMO, ONE_WORKER, study_of, trial_runs
from processes import CLI, cli_env, run_cli



@pytest.fixture(scope="module")
def demo_search(tmp_path_factory, shared_cache, ray_head):
    workdir = tmp_path_factory.mktemp("demo-search")
    result = run_cli([*DEMO, "--num-samples", "6", "--name", "demo"], cwd=workdir, cache_dir=shared_cache,
                     ray=ray_head)
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


def test_demo_search_races_configs_on_paired_seeds_and_tags_each_trial(demo_search):
    """The default search (--repeats auto): every trial's training seed is its repeat's paired seed
    (from --search-seed 0), its config id and repeat are tagged, and the race ran some config on
    a second seed (the incumbent's top-up or a challenger's race)."""
    from metaxl_tune.search.space.racing import paired_seed

    workdir, result = demo_search
    parents, trials = trial_runs(MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}"), "demo")
    assert parents[0].data.tags["metaxl.repeats"] == "auto" and parents[0].data.tags["metaxl.max_repeats"] == "3"
    by_config = collections.defaultdict(list)
    for run in trials:
        repeat = int(run.data.tags["metaxl.repeat"])
        assert run.data.params["seed"] == run.data.tags["metaxl.seed"] == str(paired_seed(0, repeat))
        by_config[run.data.tags["metaxl.config_id"]].append(run)
    searched = ("meta_lr", "rtn_bottleneck", "rtn_layers", "source")
    for runs in by_config.values():
        assert sorted(int(run.data.tags["metaxl.repeat"]) for run in runs) == list(range(len(runs)))
        assert len({tuple(run.data.params[name] for name in searched) for run in runs}) == 1
    assert max(len(runs) for runs in by_config.values()) >= 2
    study = study_of(workdir, "demo")
    assert sorted((t.user_attrs["config_id"], t.user_attrs["repeat"]) for t in study.trials) == sorted(
        (run.data.tags["metaxl.config_id"], int(run.data.tags["metaxl.repeat"])) for run in trials)
    assert "seeds): " in result.stdout or "(one seed): " in result.stdout


def test_the_preset_alone_takes_its_space_model_and_data(demo_search):
    """--preset demo with no --space, --model or --data: all three are the preset's (a typed
    --space wins over it, tests/cli/test_bad_inputs.py)."""
    workdir, result = demo_search
    assert result.stdout.startswith("search demo: space demo.yaml, 6 trials"), result.stdout
    saved = json.loads((workdir / "metaxl-searches" / "demo" / "metaxl-search.json").read_text())
    assert (saved["preset"], saved["space"], saved["base"]["model"], saved["base"]["data"]) == (
        "demo", "demo", "tiny", "synthetic")


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
def pruning_search(tmp_path_factory, shared_cache, ray_head):
    workdir = tmp_path_factory.mktemp("pruning-search")
    (workdir / "space.yaml").write_text(PRUNING_SPACE)
    result = run_cli(["search", "--task", "ner", "--target", "tk", "--model", "tiny", "--data", "synthetic",
                      "--space", "space.yaml", "--num-samples", "5", "--max-concurrent", "1", "--name", "pruning"],
                     cwd=workdir, cache_dir=shared_cache, ray=ray_head)
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
    ranked = ranked_configs(Tracker(f"sqlite:///{workdir / 'mlflow.db'}", "demo"), "best_dev_f1")
    # Fewer than 3 when ASHA left fewer configs: "top 2 of 2".
    shown = min(3, len(ranked.rows))
    assert f"top {shown} of {len(ranked.rows)} configs by mean best_dev_f1" in exported.stdout
    # The file records what the incumbent was chosen on, and trains its first seed.
    header = (workdir / "best.yaml").read_text().splitlines()
    chosen = json.loads(next(line for line in header if line.startswith("# chosen on: ")).removeprefix("# chosen on: "))
    assert (chosen["config_id"], chosen["mean"]) == (ranked.incumbent.config_id, round(ranked.incumbent.mean, 4))
    trained = subprocess.run(
        [*CLI, "train", "--config", "best.yaml", "--output", "repro", "--no-progress"],
        cwd=workdir, env={**cli_env(shared_cache), "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600,
    )
    assert trained.returncode == 0, trained.stderr
    reproduced = json.loads((workdir / "repro" / "results.json").read_text())["best_dev_f1"]
    _, trials = trial_runs(MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}"), "demo")
    first = next(run for run in trials if run.data.tags["metaxl.trial_id"] == chosen["trials"][0])
    assert reproduced == pytest.approx(first.data.metrics["best_dev_f1"], abs=1e-9)


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
    # Each config's row shows the highest peak of its seeds; the lines under the table name its
    # trials without the prefix they all share (abc12_00003 -> 00003).
    rule = next(i for i, line in enumerate(lines) if line.startswith("-"))
    behind = lines.index("config ids and the trials behind each row (their seeds):")
    ranked = ranked_configs(Tracker(f"sqlite:///{workdir / 'mlflow.db'}", "demo"), "best_dev_f1")
    by_id = {run.data.tags["metaxl.trial_id"]: run for run in trials}
    for rank, row in enumerate(ranked.rows, start=1):
        shown_ids = lines[behind + rank].split("trials ", 1)[1]
        assert all(trial.rsplit("_", 1)[-1] in shown_ids for trial in row.trial_ids)
        peak = max(by_id[trial].data.metrics["peak_memory_mib"] for trial in row.trial_ids)
        assert str(round(peak)) in lines[rule + rank].split()


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


def test_best_rerun_checks_the_winner_against_seed_noise(demo_search, shared_cache, ray_head):
    workdir, _ = demo_search
    result = run_cli(["best", "--name", "demo", "--top", "1", "--rerun", "--seeds", "2"], cwd=workdir,
                     cache_dir=shared_cache, ray=ray_head)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Cost: " in result.stdout and "CPU-hours" in result.stdout
    assert "Mean ± std of best_dev_f1 over seeds (n = 2)" in result.stdout
    assert "2 of 2 runs completed" in result.stdout
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("metaxl-tune")
    reruns = client.search_runs([experiment.experiment_id], "tags.`metaxl.search` LIKE 'demo-rerun-%' and tags.`metaxl.role` = 'trial'")
    assert sorted(run.data.params["seed"] for run in reruns) == ["1", "2"]
    # The re-run's rows are configs, named by their ids.
    incumbent = ranked_configs(Tracker(f"sqlite:///{workdir / 'mlflow.db'}", "demo"), "best_dev_f1").incumbent
    assert {run.data.tags["metaxl.setting"] for run in reruns} == {incumbent.config_id}
    # Its optimism gap: the mean over the fresh seeds 1 and 2 minus the search's mean for it.
    lines = result.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("config ") and line.endswith(" gap"))
    config, reported, seeds, fresh, fresh_seeds, gap = lines[header + 2].split()
    expected = sum(run.data.metrics["best_dev_f1"] for run in reruns) / 2
    assert (config, seeds, fresh_seeds) == (incumbent.config_id, str(incumbent.seeds), "2")
    assert float(reported) == pytest.approx(incumbent.mean, abs=0.006)
    assert float(fresh) == pytest.approx(expected, abs=0.006)
    assert float(gap) == pytest.approx(expected - incumbent.mean, abs=0.006)
    assert "optimism gap = fresh-seed mean minus the search's mean" in result.stdout


MULTI_SOURCE_SPACE = """
description: two source languages, strategies and RTN sets
metric: best_dev_f1
mode: max
fixed: {method: metaxl, epochs: 1, lr: 3.0e-3, batch_size: 4, target_size: 8, max_length: 16, rtn_bottleneck: 8}
parameters:
  source_strategy: {type: categorical, values: [sequential, bandit]}
  rtn_per_source: {type: categorical, values: [false, true], when: {source_strategy: sequential}}
"""


def test_two_source_search_logs_per_language_steps_and_used_sizes(tmp_path, shared_cache, ray_head):
    from tests.helpers import write_panx

    for language, count in (("tk", 10), ("en", 30), ("tr", 25)):
        write_panx(tmp_path / "data", language, count)
    (tmp_path / "space.yaml").write_text(MULTI_SOURCE_SPACE)
    result = run_cli([*DEMO, "--space", "space.yaml", "--data", str(tmp_path / "data"), "--source", "en,tr",
                      "--source-size", "28", "--num-samples", "2", *ONE_WORKER, "--scheduler", "fifo", "--name", "multi"],
                     cwd=tmp_path, cache_dir=shared_cache, ray=ray_head)
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
