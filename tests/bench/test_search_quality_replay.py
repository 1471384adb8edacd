"""The seed-aware replays of bench/search_quality.py (search_quality_racing.py, search_quality_truth.py)
on small made-up tables: they race with the search's own Race, draw a config's seeds without
replacement on paired seeds, read the truth from all seeds or from held-out ones, and score what
the user acts on (the incumbent as the strategy defines it)."""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict

import optuna
import pytest

from metaxl_tune.config import RunConfig
from metaxl_tune.search.space import racing, strategy
from metaxl_tune.search.space.racing_search import RacingSearch
from metaxl_tune.search.space.schema import load_space
from processes import REPO

sys.path.insert(0, str(REPO / "bench"))

import search_quality  # noqa: E402
import search_quality_racing  # noqa: E402
from search_quality_racing import Step, score, seeded_replay  # noqa: E402
from search_quality_table import config_key, sampled_params  # noqa: E402
from search_quality_truth import Table  # noqa: E402

GRID = """
metric: best_dev_f1
mode: max
fixed: {method: metaxl, epochs: 4, lr: 3.0e-3, source_size: 16, target_size: 16, batch_size: 8, max_length: 16,
        eval_max_length: 16, rtn_layers: emb}
parameters:
  meta_lr: {type: categorical, values: [1.0e-4, 1.0e-3]}
  rtn_bottleneck: {type: categorical, values: [8, 32]}
  source: {type: categorical, values: [en, related]}
"""


@pytest.fixture(autouse=True)
def quiet_optuna():
    optuna.logging.set_verbosity(optuna.logging.ERROR)


@pytest.fixture
def space(tmp_path):
    (tmp_path / "grid.yaml").write_text(GRID)
    return load_space(tmp_path / "grid.yaml")


def made_up_rows(space, seeds: int, targets=("tk",)) -> list[dict]:
    """Config i scores 10 + 2 i; seed s adds (-1)^s (s mod 3): the configs differ more than the seeds."""
    rows = []
    for target in targets:
        for index, point in enumerate(space.grid()):
            for seed in range(1, seeds + 1):
                final = 10.0 + 2.0 * index + (-1) ** seed * (seed % 3)
                rows.append({"target": target, "params": sampled_params(space, point), "seed": seed, "epochs": [
                    {"epoch": e, "dev_f1": final * e / 4, "test_f1": final * e / 4 + 0.5, "steps": 10, "seconds": 1.0}
                    for e in range(1, 5)]})
    return rows


def base(target="tk") -> RunConfig:
    return RunConfig(model="tiny", data="synthetic", target=target)


def test_the_replay_runs_the_search_s_own_race_and_strategy_factories(space):
    assert search_quality_racing.racing is racing
    for name in ("build_sampler", "build_searcher", "build_scheduler"):
        assert getattr(search_quality_racing, name) is getattr(strategy, name)
    table = Table(made_up_rows(space, 4), "tk")
    run = seeded_replay(table, table.reading("all"), space, base(), "tpe", "asha", "auto", 0, budget=1.0)
    # The searcher search builds (strategy.build_searcher with a race), holding the search's Race.
    assert type(run.searcher) is RacingSearch and run.searcher.race is run.race and type(run.race) is racing.Race
    assert run.searcher.trials and all(run.race.values(cid) for cid, _ in run.searcher.trials.values())
    # The incumbent the replay scores is the race's own.
    assert run.steps[-1].incumbent == config_key(run.race.params(run.race.incumbent()))


def test_a_config_s_runs_draw_its_seeds_without_replacement_and_every_config_the_same_seed_per_repeat(space):
    table = Table(made_up_rows(space, 4), "tk")
    run = seeded_replay(table, table.reading("all"), space, base(), "random", "fifo", 3, 5, budget=2.0)
    by_repeat: dict[int, set[int]] = defaultdict(set)
    by_config: dict[str, list[int]] = defaultdict(list)
    for key, repeat, seed, _ in run.log:
        by_repeat[repeat].add(seed)
        by_config[key].append(seed)
    assert set(by_repeat) >= {0, 1, 2} and all(len(seeds) == 1 for seeds in by_repeat.values())  # paired
    firsts = [repeat for repeat in by_repeat if repeat < 4]  # the table has 4 seeds: repeats 0-3 all differ
    assert len({seed for repeat in firsts for seed in by_repeat[repeat]}) == len(firsts)
    assert all(len(set(seeds)) == len(seeds) for seeds in by_config.values() if len(seeds) <= 4)
    assert run.seed_reuses == sum(max(0, len(seeds) - 4) for seeds in by_config.values())


def test_the_held_out_reading_draws_the_first_half_of_the_seeds_and_judges_by_the_rest(space):
    table = Table(made_up_rows(space, 4), "tk")
    reading = table.reading("held_out")
    key = config_key(sampled_params(space, space.grid()[0]))
    assert reading.pool[key] == (1, 2)
    # Seeds 3 and 4 of config 0: final 10 - 0 and 10 + 1; test F1 is dev + 0.5.
    assert reading.truth[key] == pytest.approx(statistics.fmean([10.5, 11.5]))
    assert table.reading("all").truth[key] == pytest.approx(statistics.fmean([9.5, 12.5, 10.5, 11.5]))
    run = seeded_replay(table, reading, space, base(), "tpe", "asha", "auto", 1, budget=2.0)
    assert {seed for _, _, seed, _ in run.log} == {1, 2}
    assert Table(made_up_rows(space, 3), "tk").reading("held_out") is None  # needs >= 4 seeds


def test_the_sampler_sees_each_repeat_or_one_mean_per_config_as_the_view_says(space):
    table = Table(made_up_rows(space, 4), "tk")
    each = seeded_replay(table, table.reading("all"), space, base(), "tpe", "fifo", 3, 2, budget=1.0, view="each")
    assert [t.value for t in each.study.trials] == [value for *_, value in each.log]  # one trial per run
    mean = seeded_replay(table, table.reading("all"), space, base(), "tpe", "fifo", 3, 2, budget=1.0, view="mean")
    values = defaultdict(list)
    for key, _, _, value in mean.log:
        values[key].append(value)
    first_told = {}
    for trial in mean.study.trials:
        if trial.state == optuna.trial.TrialState.COMPLETE:
            first_told.setdefault(config_key({name: trial.params[name] for name in space.names}), trial)
    assert len(mean.study.trials) < mean.trials and first_told
    for key, trial in first_told.items():  # one observation per config: the mean of its three seeds
        assert trial.value == pytest.approx(statistics.fmean(values[key][:3]))


def test_a_replay_is_scored_from_the_incumbent_against_the_reading_s_truth():
    reading = search_quality_racing.Reading("all", {"a": (1,), "b": (1,), "c": (1,), "d": (1,)},
                                            {"a": 20.0, "b": 19.5, "c": 18.0, "d": 12.0})
    steps = [Step(0.1, None, None, 0, config="d"), Step(0.3, "c", 21.0, 1, pruned="a", config="a"),
             Step(0.6, "b", 19.0, 2, config="b"), Step(0.9, "c", 18.5, 2, config="c"),
             Step(1.2, "b", 20.5, 3, config="b"), Step(2.0, "b", 19.5, 4, config="b")]
    one = score(steps, reading, 1.0)
    assert one["final_regret"] == pytest.approx(0.5) and one["success"]  # the state after the trial that crossed 1.0
    assert one["cost_to_within_1f1"] == 0.6 and one["cost_to_stay_within_1f1"] == 1.0
    assert one["optimism_gap"] == pytest.approx(1.0) and one["incumbent_seeds"] == 3
    assert one["top3_pruned"] and one["trials"] == 5 and one["configs"] == 4 and one["pruned"] == 1
    half = score(steps, reading, 0.5)
    assert half["final_regret"] == pytest.approx(0.5) and half["cost_to_stay_within_1f1"] == 0.5
    early = score(steps[:2], reading, 1.0)
    assert early["final_regret"] == 2.0 and not early["success"] and early["cost_to_within_1f1"] == 1.0


def run_main(tmp_path, space_text: str, rows: list[dict], capsys, *extra: str) -> tuple[dict, str]:
    (tmp_path / "grid.yaml").write_text(space_text)
    table = tmp_path / "table.jsonl"
    table.write_text("".join(json.dumps(row) + "\n" for row in rows))
    search_quality.main(["--space", str(tmp_path / "grid.yaml"), "--table", str(table), "--targets", "tk,qu",
                         "--repetitions", "1", "--strategies", "random_fifo", "--plot", str(tmp_path / "curves.png"),
                         *extra])
    captured = capsys.readouterr()
    return json.loads(captured.out.splitlines()[-1]), captured.err


ISSUE_KEYS = ("racing_final_regret_median", "racing_final_regret_q3", "racing_success_rate", "racing_success_rate_2x",
              "racing_cost_to_within_1f1", "racing_optimism_gap_median", "single_seed_optimism_gap_median",
              "single_seed_final_regret_median", "repeat3_final_regret_median", "top3_pruned_rate")


def test_the_benchmark_prints_the_issue_s_keys_both_readings_and_the_seeds_per_config(tmp_path, space, capsys):
    figures, err = run_main(tmp_path, GRID, made_up_rows(space, 4, ("tk", "qu")), capsys)
    assert all(figures[key] is not None for key in ISSUE_KEYS)
    assert all(figures["held_out"][key] is not None for key in ISSUE_KEYS)
    assert set(figures["held_out_minus_all"]) == set(ISSUE_KEYS)
    assert figures["seeds_per_config"] == {"tk": {"4": 8}, "qu": {"4": 8}}
    assert figures["random_cost_to_within_1f1"] is not None  # the old keys are kept
    assert set(figures["strategies"]["all"]) == {"single_seed", "repeat3", "repeat3@mean", "racing", "racing@mean",
                                                 "racing@max4", "random_racing", "random_racing@max4"}
    # The best config (index 7: 24 F1) is 2 F1 above the second, far outside the seeds' standard error.
    assert figures["signal_detail"]["tk"]["best_minus_second"] == 2.0 and figures["signal_detail"]["tk"][
        "best_told_from_second"]
    assert (tmp_path / "curves.png").stat().st_size > 0
    assert "held-out reading skipped" not in err


def test_with_two_seeds_the_held_out_reading_is_skipped_and_says_why(tmp_path, space, capsys):
    figures, err = run_main(tmp_path, GRID, made_up_rows(space, 2, ("tk", "qu")), capsys, "--seeded", "racing")
    assert figures["held_out"] is None and figures["racing_final_regret_median"] is not None
    assert figures["seeds_per_config"] == {"tk": {"2": 8}, "qu": {"2": 8}}
    assert "held-out reading skipped: it needs >= 4 seeds per config" in err and "the table has 2" in err
    # Racing is capped to the two seeds the table has: no run repeats a seed it already trained.
    assert "repeats auto max 2" in err
