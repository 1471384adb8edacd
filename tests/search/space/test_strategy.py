"""Samplers, schedulers and searchers as strategy.py builds them, and the tabular benchmark that
replays searches through the same factories. No Ray cluster: the searcher and ASHA are driven
through their Tune interfaces in this process, as bench/search_quality.py does."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import optuna
import pytest

from metaxl_tune.search.driver import runner
from metaxl_tune.search.space import strategy
from metaxl_tune.search.space.schema import load_space
from metaxl_tune.search.space.strategy import StrategyError, build_sampler, build_searcher, check_sampler
from metaxl_tune.search.driver.warm_start import WARM_START_FROM, PriorTrial, seed_study
from bench_scripts import tiny_grid
from processes import REPO, cli_env, kill_session, wait_for

BENCH = REPO / "bench"


def run_grid(space, sampler_name: str, trials: int) -> list[dict]:
    searcher = build_searcher(space, build_sampler(sampler_name, 3, space), study_name="grid", storage=None)
    sampled = []
    for number in range(trials):
        config = searcher.suggest(f"t{number}")
        sampled.append({name: config[name] for name in space.names})
        searcher.on_trial_complete(f"t{number}", {space.metric: float(number), "epoch": 1, "epochs_total": 1})
    return sampled


def test_grid_runs_every_point_of_paper_grid_exactly_once():
    space = load_space("paper-grid")
    points = [{name: point[name] for name in space.names} for point in space.grid()]
    sampled = run_grid(space, "grid", len(points))
    assert len(points) == 48
    assert sorted(map(json.dumps, sampled)) == sorted(map(json.dumps, points))


@pytest.mark.parametrize(("sampler", "space", "named"), [
    ("grid", "demo", "parameters.meta_lr is loguniform"),
    ("gp", "demo", "parameters.rtn_detach_input has a when: condition"),
    ("cmaes", "paper-grid", "parameters.meta_lr is categorical"),
    ("qmc", "paper-grid", "parameters.meta_lr is categorical"),
])
def test_a_sampler_that_cannot_model_the_space_is_refused_in_one_line(sampler, space, named):
    with pytest.raises(StrategyError) as refused:
        check_sampler(sampler, load_space(space))
    message = str(refused.value)
    assert len(message.splitlines()) == 1 and message.startswith(f"--sampler {sampler}: ") and named in message


def test_grid_refuses_more_trials_than_points():
    with pytest.raises(StrategyError, match="--num-samples 49: the grid of paper-grid.yaml has 48 points"):
        check_sampler("grid", load_space("paper-grid"), 49)


def test_seeding_a_study_twice_adds_the_prior_trials_once():
    space = load_space("paper-grid")
    point = {name: value for name, value in space.grid()[0].items() if name in space.names}
    priors = [PriorTrial(search="tk-search", number=0, state=optuna.trial.TrialState.COMPLETE, params=point, value=40.0,
                         intermediate_values={1: 30.0, 2: 40.0}),
              PriorTrial(search="tk-search", number=1, state=optuna.trial.TrialState.PRUNED, params=point, value=None,
                         intermediate_values={1: 10.0})]
    study = optuna.create_study(direction="maximize")
    assert seed_study(study, priors, space, top=1) == 2
    assert seed_study(study, priors, space, top=1) == 2  # a driver restarted before Tune's first snapshot
    states = [(t.state, t.user_attrs.get(WARM_START_FROM)) for t in study.trials]
    assert states == [(optuna.trial.TrialState.COMPLETE, "tk-search"), (optuna.trial.TrialState.PRUNED, "tk-search"),
                      (optuna.trial.TrialState.WAITING, None)]


# ---- the tabular benchmark -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def bench_module():
    sys.path.insert(0, str(BENCH))
    try:
        import search_quality
    finally:
        sys.path.remove(str(BENCH))
    return search_quality


def test_the_replay_builds_its_sampler_searcher_and_scheduler_with_the_factories_search_uses(bench_module):
    for name in ("build_sampler", "build_searcher", "build_scheduler"):
        assert getattr(bench_module, name) is getattr(strategy, name) is getattr(runner, name)


def test_a_replay_runs_the_space_sampler_and_asha_that_search_builds(bench_module):
    from ray.tune.schedulers import ASHAScheduler

    from metaxl_tune.search.space.pruning import PruningAwareOptunaSearch
    from search_quality_table import sampled_params

    space = load_space(bench_module.DEFAULT_SPACE)
    # A made-up table: each config's F1 rises with its epochs, the first config scores best.
    rows = [{"target": "tk", "params": sampled_params(space, point), "seed": 1,
             "epochs": [{"epoch": e, "dev_f1": (48 - index) * e / 4, "test_f1": (48 - index) * e / 4, "steps": 10,
                         "seconds": 1.0} for e in range(1, 5)]}
            for index, point in enumerate(space.grid())]
    table = bench_module.Table(rows, "tk")
    run = bench_module.replay(table, space, runner.RunConfig(model="tiny", data="synthetic", target="tk"),
                              "tpe", "asha", seed=0)
    assert type(run.searcher) is PruningAwareOptunaSearch
    assert run.searcher._space == space.sample and run.study.sampler is run.sampler
    assert type(run.sampler) is optuna.samplers.TPESampler and type(run.scheduler) is ASHAScheduler
    # ASHA stopped trials, and Optuna was told they were pruned; the budget is the grid's cost.
    states = [t.state for t in run.study.trials]
    assert run.pruned > 0 and states.count(optuna.trial.TrialState.PRUNED) == run.pruned
    assert 1.0 <= run.trace[-1][0] < 1.0 + 4 * 10 / table.grid_cost + 1e-9


TINY_GRID = tiny_grid(1e-3, 1e-2)


def test_a_killed_table_build_continues_from_the_configs_already_done(tmp_path, shared_cache):
    (tmp_path / "grid.yaml").write_text(TINY_GRID)
    table = tmp_path / "table.jsonl"
    command = [sys.executable, str(BENCH / "search_quality.py"), "--build-only", "--space", str(tmp_path / "grid.yaml"),
               "--table", str(table), "--targets", "tk", "--seeds", "1", "--model", "tiny"]
    env = cli_env(shared_cache)
    first = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    try:
        wait_for(lambda: table.is_file() and table.read_text().count("\n") >= 1, timeout=300,
                 what="the first config's line")
    finally:
        kill_session(first.pid, signal.SIGKILL)
        first.wait()
    kept = table.read_text().splitlines()
    assert len(kept) == 1  # killed before the second config ended (it trains as long as the first)
    second = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    assert "1 lines kept, 1 to train" in second.stderr and second.stderr.count("trained tk") == 1
    lines = table.read_text().splitlines()
    assert lines[0] == kept[0] and len(lines) == 2
    assert {json.loads(line)["params"]["meta_lr"] for line in lines} == {1e-3, 1e-2}


def test_a_warm_start_from_a_target_that_ranks_configs_alike_finds_the_best_with_its_first_trial(bench_module):
    from search_quality_table import sampled_params

    space = load_space(bench_module.DEFAULT_SPACE)
    rows = [{"target": target, "params": sampled_params(space, point), "seed": 1,
             "epochs": [{"epoch": e, "dev_f1": (48 - index) * e / 4, "test_f1": (48 - index) * e / 4, "steps": 10,
                         "seconds": 1.0} for e in range(1, 5)]}
            for target in ("tk", "qu") for index, point in enumerate(space.grid())]
    tables = {target: bench_module.Table(rows, target) for target in ("tk", "qu")}
    summary = bench_module.run_strategies(tables, space, 2, ["random_fifo", "warm_tpe_asha"], lambda line: None)
    one_trial = 4 * 10 / tables["tk"].grid_cost  # the earlier best, enqueued first, trained to its end
    assert summary["warm_tpe_asha"]["cost_to_within_1f1_by_target"] == {"tk": round(one_trial, 3),
                                                                         "qu": round(one_trial, 3)}
    assert summary["warm_tpe_asha"]["regret_at_cost"]["0.05"] == [0.0, 0.0, 0.0]
    assert summary["random_fifo"]["cost_to_within_1f1_by_target"]["tk"] > one_trial
