"""Racing in a real search (Ray Tune, Optuna, MLflow): seeds are part of a trial, the race decides
which config runs again, and a search stopped mid-race resumes it with no repeat lost or run twice.

The searches run the real driver (run_search) with the documented trial hook
(racing_driver.py): trials report chosen scores instead of training, so every racing decision
is known in advance. The CLI's own search (real training, demo preset) is checked for seeds and
config ids in test_search_cli.py's demo search.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from metaxl_tune.results.mlflow_filters import tags_equal
from metaxl_tune.results.tracking import CONFIG_ID_TAG, REPEAT_TAG, SEED_TAG
from metaxl_tune.search.driver.options import optuna_storage
from metaxl_tune.search.space.racing import paired_seed
from processes import cli_env, kill_session, tune_results, wait_for

DRIVER = Path(__file__).with_name("racing_driver.py")
SEARCH_SEED = 7  # racing_driver.SEARCH_SEED
COMPLETE, PRUNED = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED


def driver(plan: str, folder: Path, name: str, cache: Path, ray, *, resume: bool = False) -> subprocess.Popen:
    """The racing driver, joining the session's Ray head (conftest.ray_head) as a cluster's driver."""
    return subprocess.Popen(
        [sys.executable, str(DRIVER), plan, str(folder), name, ray.address, *(["--resume"] if resume else [])],
        cwd=folder, env={**cli_env(cache, ray), "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )


def finish(process: subprocess.Popen, timeout: float = 600) -> tuple[int, str]:
    try:
        output, _ = process.communicate(timeout=timeout)
    finally:
        kill_session(process.pid)
        process.wait()
    return process.returncode, output


def outcome_of(output: str) -> dict:
    return json.loads(output.strip().splitlines()[-1])


def records(folder: Path, name: str) -> tuple[list, list]:
    """(Optuna trials, MLflow trial runs) of a search."""
    study = optuna.load_study(study_name=name, storage=optuna_storage(folder / "metaxl-searches" / name))
    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("metaxl-tune")
    runs = client.search_runs([experiment.experiment_id], tags_equal({"metaxl.search": name}), max_results=1000)
    return study.trials, [run for run in runs if run.data.tags["metaxl.role"] == "trial"]


def appearance(folder: Path) -> list[str]:
    """Config ids in the order the trials first met them (racing_driver.py's plan index)."""
    return (folder / "order.txt").read_text().split()


def completed_runs(runs: list) -> dict[tuple[int, int], list]:
    """(config by appearance, repeat) -> its FINISHED MLflow runs."""
    order = appearance_of_runs(runs)
    found = defaultdict(list)
    for run in runs:
        if run.info.status == "FINISHED":
            found[order.index(run.data.tags[CONFIG_ID_TAG]), int(run.data.tags[REPEAT_TAG])].append(run)
    return found


def appearance_of_runs(runs: list) -> list[str]:
    ordered = sorted(runs, key=lambda run: run.info.start_time)
    return list(dict.fromkeys(run.data.tags[CONFIG_ID_TAG] for run in ordered))


# ---- racing, stopped while a challenger is raced, then resumed -----------------------------------

@pytest.fixture(scope="module")
def raced(tmp_path_factory, shared_cache, ray_head):
    """The racing plan (racing_driver.PLANS["racing"]) stopped by SIGTERM once the challenger's
    second seed has started (the race between configs 0 and 1 is on), then resumed."""
    folder = tmp_path_factory.mktemp("raced")
    first = driver("racing", folder, "raced", shared_cache, ray_head)
    try:
        wait_for(lambda: (folder / "started-1-1").exists() or first.poll() is not None, timeout=480,
                 what="the challenger's second seed")
        first.send_signal(signal.SIGTERM)
    finally:
        stopped_code, stopped_output = finish(first)
    stopped_markers = sorted(path.name for path in folder.glob("started-*"))
    resumed_code, resumed_output = finish(driver("racing", folder, "raced", shared_cache, ray_head, resume=True))
    assert resumed_code == 0, resumed_output
    return folder, stopped_code, stopped_output, stopped_markers, outcome_of(resumed_output)


def test_the_search_was_stopped_mid_race(raced):
    _, stopped_code, stopped_output, markers, _ = raced
    assert stopped_code == 0, stopped_output
    stopped = outcome_of(stopped_output)
    assert stopped["interrupted"] == "SIGTERM" and not stopped["finished"]
    # Config 1 won its first seed, and its second was running: the race was on.
    assert "started-1-1" in markers and "started-2-0" not in markers


def test_trials_carry_their_seed_config_id_and_repeat(raced):
    folder, *_ = raced
    _, runs = records(folder, "raced")
    reported = tune_results(folder / "metaxl-searches" / "raced")
    assert runs
    for run in runs:
        repeat = int(run.data.tags[REPEAT_TAG])
        seed = paired_seed(SEARCH_SEED, repeat)
        assert run.data.tags[SEED_TAG] == run.data.params["seed"] == str(seed)
        # The seed the trial's RunConfig held, as the trial reported it.
        rows = reported[run.data.tags["metaxl.trial_id"]]
        assert rows and all(row["seed"] == seed for row in rows)
    # Every seed of one config shares its id; the ids are the configs' (one per sampled lr).
    by_config = defaultdict(set)
    for run in runs:
        by_config[run.data.tags[CONFIG_ID_TAG]].add(run.data.params["lr"])
    assert all(len(values) == 1 for values in by_config.values())
    assert len(set().union(*by_config.values())) == len(by_config) == 4


def test_a_config_that_wins_twice_gets_a_third_seed_and_is_the_incumbent(raced):
    folder, *_, outcome = raced
    done = completed_runs(records(folder, "raced")[1])
    assert {repeat for config, repeat in done if config == 1} == {0, 1, 2}
    # Its paired opponent ran the same seeds.
    assert {repeat for config, repeat in done if config == 0} == {0, 1, 2}
    assert outcome["best"]["config_id"] == appearance(folder)[1]
    assert outcome["best"]["seeds"] == 3 and outcome["best"]["value"] == pytest.approx((60 + 61 + 59) / 3)


def test_a_worse_challenger_is_dropped_after_one_paired_seed(raced):
    folder, *_ = raced
    done = completed_runs(records(folder, "raced")[1])
    assert {repeat for config, repeat in done if config == 2} == {0}
    assert {repeat for config, repeat in done if config == 3} == {0}


def test_resume_loses_no_repeat_and_runs_none_twice(raced):
    folder, *_, outcome = raced
    _, runs = records(folder, "raced")
    done = completed_runs(runs)
    assert sorted(done) == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2), (2, 0), (3, 0)]
    assert all(len(found) == 1 for found in done.values())
    assert outcome["counts"] == {"completed": 8, "pruned": 0, "failed": 0} and outcome["finished"]


def test_the_sampler_sees_each_seed_as_its_own_observation_of_the_same_point(raced):
    folder, *_ = raced
    optuna_trials, _ = records(folder, "raced")
    winner = appearance(folder)[1]
    seen = sorted((t.user_attrs["repeat"], t.user_attrs["seed"], t.value, t.params["lr"])
                  for t in optuna_trials if t.state == COMPLETE and t.user_attrs.get("config_id") == winner)
    assert [(repeat, seed, value) for repeat, seed, value, _ in seen] == [
        (0, paired_seed(SEARCH_SEED, 0), 60.0), (1, paired_seed(SEARCH_SEED, 1), 61.0),
        (2, paired_seed(SEARCH_SEED, 2), 59.0)]
    assert len({lr for *_, lr in seen}) == 1


# ---- --repeats 3 with ASHA ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def asha(tmp_path_factory, shared_cache, ray_head):
    folder = tmp_path_factory.mktemp("asha-repeats")
    code, output = finish(driver("asha", folder, "asha", shared_cache, ray_head))
    assert code == 0, output
    return folder, outcome_of(output)


def test_a_pruned_repeat_is_a_pruned_trial(asha):
    folder, outcome = asha
    optuna_trials, runs = records(folder, "asha")
    order = appearance(folder)
    states = {(order.index(t.user_attrs["config_id"]), t.user_attrs["repeat"]): t.state for t in optuna_trials}
    assert states == {(0, 0): COMPLETE, (0, 1): PRUNED, (0, 2): COMPLETE,
                      (1, 0): COMPLETE, (1, 1): COMPLETE, (1, 2): PRUNED}
    outcomes = {(order.index(run.data.tags[CONFIG_ID_TAG]), int(run.data.tags[REPEAT_TAG])):
                (run.info.status, run.data.tags["metaxl.outcome"]) for run in runs}
    assert outcomes[0, 1] == outcomes[1, 2] == ("KILLED", "pruned")
    assert outcome["counts"] == {"completed": 4, "pruned": 2, "failed": 0}


def test_a_configs_mean_uses_only_its_completed_repeats(asha):
    folder, outcome = asha
    # Config 0: 52 and 58 completed, repeat 1 pruned at 40. Counted, the pruned score would
    # make config 1 (53, 54) the incumbent; left out, config 0 leads with 55 over 2 seeds.
    assert outcome["best"]["config_id"] == appearance(folder)[0]
    assert outcome["best"]["seeds"] == 2 and outcome["best"]["value"] == pytest.approx(55.0)
