"""`search --sampler` and `--warm-start` end to end: the real CLI against the session's shared Ray
head (conftest.ray_head; each search connects with --address), real MLflow, tiny 1-epoch trials."""

from __future__ import annotations

import json
import pickle

import optuna
import pytest
from mlflow.tracking import MlflowClient

from metaxl_tune.results.mlflow_filters import tags_equal
from metaxl_tune.search.driver.options import optuna_storage
from metaxl_tune.search.driver.warm_start import WARM_START_FROM
from processes import run_cli
from search_runs import ONE_WORKER

TINY = ["--task", "ner", "--target", "tk", "--model", "tiny", "--data", "synthetic", "--epochs", "1",
        "--source-size", "16", "--target-size", "16", "--batch-size", "8", "--max-length", "16",
        "--eval-max-length", "16"]
SPACES = {
    # Conditionals and every type: tpe and random take the demo space as it is.
    "demo": None,
    "categorical.yaml": """
metric: best_dev_f1
mode: max
fixed: {method: metaxl, rtn_bottleneck: 8, source: en}
parameters:
  meta_lr: {type: categorical, values: [1.0e-3, 1.0e-2]}
  rtn_layers: {type: categorical, values: [last]}
""",
    "numeric.yaml": """
metric: best_dev_f1
mode: max
fixed: {method: metaxl, rtn_bottleneck: 8, rtn_layers: last, source: en}
parameters:
  meta_lr: {type: loguniform, low: 1.0e-4, high: 1.0e-2}
  lr: {type: loguniform, low: 1.0e-3, high: 1.0e-2}
""",
}
SAMPLER_SPACE = {"tpe": "demo", "gp": "categorical.yaml", "cmaes": "numeric.yaml", "qmc": "numeric.yaml",
                 "grid": "categorical.yaml"}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("samplers")
    for name, text in SPACES.items():
        if text is not None:
            (directory / name).write_text(text)
    return directory


def search(workdir, shared_cache, ray_head, *args, timeout: float = 600):
    return run_cli(["search", *TINY, *args], cwd=workdir, cache_dir=shared_cache, timeout=timeout, ray=ray_head)


def study_of(workdir, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=optuna_storage(workdir / "metaxl-searches" / name))


def parent_tags(workdir, name: str) -> dict[str, str]:
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("metaxl-tune")
    runs = client.search_runs([experiment.experiment_id], filter_string=tags_equal({"metaxl.search": name}))
    return next(run.data.tags for run in runs if run.data.tags.get("metaxl.role") == "search")


@pytest.fixture(scope="module")
def finished(workdir, shared_cache, ray_head):
    """The 2-trial search of each sampler, run once for the module (tpe's is the warm start's source)."""
    results = {}

    def run(sampler: str):
        if sampler not in results:
            space = SAMPLER_SPACE[sampler]
            results[sampler] = search(workdir, shared_cache, ray_head, "--space", space, "--sampler", sampler,
                                      "--search-seed", "5", "--num-samples", "2", *ONE_WORKER,
                                      "--name", sampler)
        return results[sampler]

    return run


@pytest.mark.parametrize("sampler", list(SAMPLER_SPACE))
def test_each_sampler_runs_a_two_trial_search_and_records_itself(finished, workdir, sampler):
    result = finished(sampler)
    assert result.returncode == 0, result.stdout + result.stderr
    trials = study_of(workdir, sampler).trials
    assert len(trials) == 2 and all(t.state.is_finished() for t in trials)
    saved = json.loads((workdir / "metaxl-searches" / sampler / "metaxl-search.json").read_text())
    assert (saved["sampler"], saved["seed"]) == (sampler, 5)
    tags = parent_tags(workdir, sampler)
    assert (tags["metaxl.sampler"], tags["metaxl.search_seed"]) == (sampler, "5")
    if sampler == "grid":
        assert sorted(t.params["meta_lr"] for t in trials) == [1e-3, 1e-2]  # each point once


def test_grid_on_a_continuous_space_is_refused_in_one_line_before_ray(workdir, shared_cache, ray_head):
    result = search(workdir, shared_cache, ray_head, "--space", "numeric.yaml", "--sampler", "grid", "--name", "nogrid")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "--sampler grid" in result.stderr
    assert not (workdir / "metaxl-searches" / "nogrid").exists()


def test_a_warm_start_from_a_search_over_other_parameters_is_refused_in_one_line(finished, workdir, shared_cache,
                                                                                   ray_head):
    assert finished("tpe").returncode == 0
    result = search(workdir, shared_cache, ray_head, "--space", "numeric.yaml", "--warm-start", "tpe",
                    "--name", "mismatch")
    assert result.returncode == 2
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1 and message.startswith("error: --warm-start tpe: ")
    assert "numeric.yaml" in message


@pytest.fixture(scope="module")
def warm(finished, workdir, shared_cache, ray_head):
    """A random-sampler search warm-started from tpe's, its earlier best first; then resumed."""
    assert finished("tpe").returncode == 0
    first = search(workdir, shared_cache, ray_head, "--space", "demo", "--sampler", "random", "--warm-start", "tpe",
                   "--warm-start-top", "1", "--num-samples", "2", "--max-concurrent", "1", "--name", "warm")
    before = study_of(workdir, "warm").trials
    resumed = search(workdir, shared_cache, ray_head, "--name", "warm", "--resume")
    return first, before, resumed


def test_a_warm_started_study_holds_the_earlier_trials_and_runs_the_earlier_best_first(warm, workdir):
    first, trials, _ = warm
    assert first.returncode == 0, first.stdout + first.stderr
    source = [t for t in study_of(workdir, "tpe").trials if t.state.is_finished()]
    priors = [t for t in trials if t.user_attrs.get(WARM_START_FROM) == "tpe"]
    assert len(priors) == len(source) == 2
    def observed(trial):
        return json.dumps(trial.params, sort_keys=True), trial.state.name, trial.value, trial.intermediate_values

    assert sorted(map(observed, priors)) == sorted(map(observed, source))
    own = sorted((t for t in trials if WARM_START_FROM not in t.user_attrs), key=lambda t: t.number)
    best = max((t for t in source if t.state == optuna.trial.TrialState.COMPLETE), key=lambda t: t.value)
    assert len(own) == 2 and own[0].params == best.params
    assert "2 completed" in first.stdout or "1 completed, 1 pruned" in first.stdout
    assert parent_tags(workdir, "warm")["metaxl.warm_start"] == "tpe"


def test_resuming_a_warm_started_search_keeps_its_prior_trials_once_and_its_sampler(warm, workdir):
    _, before, resumed = warm
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    after = study_of(workdir, "warm").trials
    assert [(t.number, t.params, t.state) for t in after] == [(t.number, t.params, t.state) for t in before]
    experiment = workdir / "metaxl-searches" / "warm"
    assert json.loads((experiment / "metaxl-search.json").read_text())["sampler"] == "random"
    # Tune pickles the searcher with its sampler; the restored search asked that one.
    state = max(experiment.glob("searcher-state-*.pkl"), key=lambda path: path.stat().st_mtime)
    assert type(pickle.loads(state.read_bytes())["_sampler"]) is optuna.samplers.RandomSampler
