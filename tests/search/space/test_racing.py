"""The racing policy (search/space/racing.py) alone: which run it asks for, which config it trusts.
Pure and fast: runs are told to the race by hand, values chosen to make each rule decide."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from metaxl_tune.search.space.racing import (
    DEFAULT_MAX_REPEATS, DROPPED, RACING, REPEATS_AUTO, SETTLED, Race, Repeat, check_repeats, incumbent_of, paired_seed,
    seed_cap,
)
from processes import REPO

A, B, C, D = ({"beta": value} for value in (1e-5, 1e-6, 1e-7, 3e-5))


def run(race: Race, config_id: str, params: dict, repeat: int, value: float | None) -> None:
    race.started(config_id, params, repeat)
    race.finished(config_id, repeat, value)


def serve(race: Race, values: dict[tuple[str, int], float | None]) -> list[tuple[str, int]]:
    """Run what the race asks for until it asks for a new config; each run's value from ``values``."""
    served = []
    while (repeat := race.next_repeat()) is not None:
        run(race, repeat.config_id, repeat.params, repeat.repeat, values[repeat.config_id, repeat.repeat])
        served.append((repeat.config_id, repeat.repeat))
    return served


# -- paired seeds ----------------------------------------------------------------------------------

def test_paired_seed_is_pinned_32_bit_and_differs_by_repeat_and_search_seed():
    seeds = [paired_seed(0, repeat) for repeat in range(4)]
    assert seeds == [paired_seed(0, repeat) for repeat in range(4)]
    assert seeds == [2059522290, 1844978927, 2872997498, 2087806025]
    assert all(0 <= seed < 2**32 for seed in seeds)
    assert len(set(seeds)) == 4
    assert paired_seed(1, 0) != paired_seed(0, 0)


def test_paired_seed_is_the_same_in_another_process():
    # Python's hash() is salted per process; the seed must not be.
    code = "from metaxl_tune.search.space.racing import paired_seed; print(paired_seed(7, 2))"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO,
                            env={"PYTHONHASHSEED": "123", "PATH": ""})
    assert int(output.stdout) == paired_seed(7, 2)


def test_paired_seed_refuses_a_negative_repeat():
    with pytest.raises(ValueError, match="repeat must be >= 0"):
        paired_seed(0, -1)


# -- options ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("given, expected", [("auto", REPEATS_AUTO), ("AUTO", REPEATS_AUTO), ("3", 3), (1, 1)])
def test_check_repeats_takes_auto_or_a_positive_integer(given, expected):
    assert check_repeats(given, DEFAULT_MAX_REPEATS) == expected


@pytest.mark.parametrize("given, max_repeats, message", [
    ("0", 3, "--repeats must be auto or an integer >= 1 (got '0')"),
    ("two", 3, "--repeats must be auto or an integer >= 1 (got 'two')"),
    (-2, 3, "--repeats must be auto or an integer >= 1 (got -2)"),
    ("auto", 0, "--max-repeats must be an integer >= 1 (got 0)"),
])
def test_check_repeats_refuses_in_one_line_naming_the_flag(given, max_repeats, message):
    with pytest.raises(ValueError) as error:
        check_repeats(given, max_repeats)
    assert str(error.value) == message


# -- --repeats N -----------------------------------------------------------------------------------

def test_repeats_one_never_asks_for_a_repeat():
    race = Race(repeats=1)
    run(race, "a", A, 0, 50.0)
    race.started("b", B, 0)
    assert race.next_repeat() is None


def test_repeats_n_offers_every_repeat_of_a_started_config_at_once():
    race = Race(repeats=3)
    race.started("a", A, 0)
    # Still running: its other repeats are offered now, so free slots run them in parallel.
    assert race.next_repeat() == Repeat("a", A, 1)
    race.started("a", A, 1)
    assert race.next_repeat() == Repeat("a", A, 2)
    race.started("a", A, 2)
    assert race.next_repeat() is None


def test_repeats_n_mean_uses_only_completed_repeats():
    race = Race(repeats=3)
    for repeat, value in enumerate([60.0, None, 70.0]):  # repeat 1 pruned
        run(race, "a", A, repeat, value)
    assert race.summary() == {"a": (65.0, 2)}
    assert race.values("a") == {0: 60.0, 1: None, 2: 70.0}
    assert race.next_repeat() is None  # a pruned repeat is not run again


# -- racing ----------------------------------------------------------------------------------------

def test_first_config_is_the_incumbent_and_a_worse_challenger_is_dropped_after_one_seed():
    race = Race()
    run(race, "a", A, 0, 60.0)
    assert race.incumbent() == "a" and race.state("a") == SETTLED
    run(race, "b", B, 0, 55.0)
    assert race.state("b") == DROPPED
    # b gets no other seed; the incumbent gets its second one for the challenger it beat.
    assert race.next_repeat() == Repeat("a", A, 1)


def test_a_tie_is_not_a_win():
    race = Race()
    run(race, "a", A, 0, 60.0)
    run(race, "b", B, 0, 60.0)
    assert race.state("b") == DROPPED


def test_a_config_that_wins_twice_gets_a_third_seed_then_becomes_the_incumbent():
    race = Race(max_repeats=3)
    run(race, "a", A, 0, 60.0)
    run(race, "b", B, 0, 65.0)
    assert race.state("b") == RACING
    # Paired: the incumbent's run on seed 1 is asked for first, then the challenger's.
    assert race.next_repeat() == Repeat("a", A, 1)
    race.started("a", A, 1)
    assert race.next_repeat() == Repeat("b", B, 1)
    race.started("b", B, 1)
    assert race.next_repeat() is None  # the challenger's seeds run one after another
    race.finished("b", 1, 64.0)
    assert race.next_repeat() is None  # decided only once the paired run has ended too
    race.finished("a", 1, 58.0)
    assert race.state("b") == RACING
    assert race.next_repeat() == Repeat("a", A, 2)
    served = serve(race, {("a", 2): 61.0, ("b", 2): 63.0})
    assert served == [("a", 2), ("b", 2)]
    assert race.state("b") == SETTLED
    assert race.incumbent() == "b"
    assert race.summary() == {"a": (pytest.approx(59.666666), 3), "b": (64.0, 3)}


def test_a_challenger_whose_mean_on_the_common_seeds_turns_worse_is_dropped_at_once():
    race = Race(max_repeats=3)
    run(race, "a", A, 0, 60.0)
    run(race, "b", B, 0, 62.0)
    served = serve(race, {("a", 1): 60.0, ("b", 1): 50.0})
    # Mean on seeds 0 and 1: b 56 < a 60. No third seed for b; a, owed one more seed for the
    # challenger it beat, has it already from the race.
    assert served == [("a", 1), ("b", 1)]
    assert race.state("b") == DROPPED
    assert race.incumbent() == "a"


def test_challengers_are_compared_on_the_common_seeds_not_on_the_incumbents_mean():
    race = Race(max_repeats=3)
    run(race, "a", A, 0, 70.0)
    run(race, "x", D, 0, 10.0)  # dropped: a gets seed 1
    run(race, "a", A, 1, 50.0)  # a's mean is now 60
    # 65 beats a's mean but not a's 70 on the same seed: dropped.
    run(race, "b", B, 0, 65.0)
    assert race.state("b") == DROPPED
    run(race, "c", C, 0, 72.0)
    assert race.state("c") == RACING
    # a already ran seed 1: c alone runs it.
    assert race.next_repeat() == Repeat("c", C, 1)


def test_the_incumbent_is_never_the_best_single_run():
    race = Race(max_repeats=2)
    run(race, "a", A, 0, 60.0)
    run(race, "b", B, 0, 90.0)
    assert race.state("b") == RACING
    # While b's paired run is pending, a has the most seeds? No: both have one; b's 90 is the
    # better mean of one seed each.
    assert race.incumbent() == "b"
    race.started("a", A, 1)
    race.finished("a", 1, 62.0)
    # a has two seeds, b one: among the configs with the most seeds, a is the incumbent.
    assert race.incumbent() == "a"


def test_the_incumbent_is_topped_up_once_per_beaten_challenger_up_to_max_repeats():
    race = Race(max_repeats=3)
    run(race, "a", A, 0, 60.0)
    assert race.next_repeat() is None  # nothing beaten yet: ask the sampler
    served = []
    for index, config_id in enumerate("bcde"):
        run(race, config_id, {"beta": index}, 0, 10.0)
        served += serve(race, {("a", 1): 61.0, ("a", 2): 59.0})
    assert served == [("a", 1), ("a", 2)]
    assert race.summary()["a"] == (60.0, 3)


def test_a_pruned_challenger_run_drops_it_and_counts_in_no_mean():
    race = Race()
    run(race, "a", A, 0, 60.0)
    run(race, "b", B, 0, 70.0)
    served = serve(race, {("a", 1): 60.0, ("b", 1): None})
    assert served == [("a", 1), ("b", 1)]
    assert race.state("b") == DROPPED
    assert race.summary()["b"] == (70.0, 1)


def test_a_pruned_first_run_is_dropped_and_is_no_incumbent():
    race = Race()
    run(race, "a", A, 0, None)
    assert race.state("a") == DROPPED and race.incumbent() is None
    run(race, "b", B, 0, 40.0)
    assert race.incumbent() == "b" and race.state("b") == SETTLED


def test_an_incumbent_run_that_was_pruned_leaves_the_common_seeds():
    race = Race(max_repeats=3)
    run(race, "a", A, 0, 60.0)
    run(race, "b", B, 0, 65.0)
    served = serve(race, {("a", 1): None, ("b", 1): 50.0, ("a", 2): 61.0, ("b", 2): 70.0})
    # Seed 1 has no value for a: b is compared on seed 0 (65 > 60) and survives; then seed 2.
    assert served == [("a", 1), ("b", 1), ("a", 2), ("b", 2)]
    assert race.summary() == {"a": (60.5, 2), "b": (pytest.approx(61.666666), 3)}
    assert race.incumbent() == "b"


def test_minimising():
    race = Race(mode="min")
    run(race, "a", A, 0, 1.0)
    run(race, "b", B, 0, 2.0)
    run(race, "c", C, 0, 0.5)
    assert race.state("b") == DROPPED and race.state("c") == RACING


def test_a_config_the_sampler_proposes_again_gets_a_new_seed():
    race = Race()
    run(race, "a", A, 0, 60.0)
    run(race, "b", B, 0, 50.0)
    assert race.next_index("b") == 1 and race.next_index("new") == 0
    race.started("b", B, race.next_index("b"))
    with pytest.raises(ValueError, match="repeat 1 was started already"):
        race.started("b", B, 1)


def test_two_challengers_race_at_once_and_the_winner_becomes_the_next_opponent():
    race = Race(max_repeats=2)
    run(race, "a", A, 0, 60.0)
    run(race, "b", B, 0, 70.0)
    run(race, "c", C, 0, 65.0)
    assert race.state("b") == RACING and race.state("c") == RACING
    served = serve(race, {("a", 1): 60.0, ("b", 1): 70.0})
    # b survived both seeds and is the opponent now; c, compared with it on their common seed
    # (65 < 70), is dropped before it spends a second one.
    assert served == [("a", 1), ("b", 1)]
    assert race.state("b") == SETTLED and race.state("c") == DROPPED
    assert race.incumbent() == "b"


# -- resume ----------------------------------------------------------------------------------------

def test_state_survives_json_mid_race_with_no_run_lost_or_run_twice():
    values = {("a", 1): 58.0, ("b", 1): 64.0, ("a", 2): 61.0, ("b", 2): 63.0}
    whole = Race()
    run(whole, "a", A, 0, 60.0)
    run(whole, "b", B, 0, 65.0)
    whole.started("a", A, 1)  # running when the driver is killed
    restored = Race()
    restored.load_state_dict(json.loads(json.dumps(whole.state_dict())))
    assert restored.state_dict() == whole.state_dict()
    assert restored.running() == [("a", 1)]
    assert restored.next_repeat() == whole.next_repeat() == Repeat("b", B, 1)
    for race in (whole, restored):
        race.finished("a", 1, 58.0)
    assert serve(restored, values) == serve(whole, values) == [("b", 1), ("a", 2), ("b", 2)]
    assert restored.summary() == whole.summary()


def test_a_run_that_never_started_is_asked_for_again():
    race = Race()
    run(race, "a", A, 0, 60.0)
    run(race, "b", B, 0, 65.0)
    race.started("a", A, 1)
    race.forget_running("a", 1)
    assert race.next_repeat() == Repeat("a", A, 1)


def test_state_of_another_version_is_refused():
    race = Race()
    with pytest.raises(ValueError, match="race state version 99"):
        race.load_state_dict({**race.state_dict(), "version": 99})


def test_racing_imports_neither_ray_nor_optuna_nor_torch():
    code = ("import sys, metaxl_tune.search.space.racing; "
            "print(sorted(m for m in ('ray', 'optuna', 'torch', 'mlflow') if m in sys.modules))")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert output.stdout.strip() == "[]"


@pytest.mark.parametrize("seed", range(5))
def test_random_searches_in_parallel_never_run_a_repeat_twice_nor_a_dropped_config_again(seed):
    import random

    draw = random.Random(seed)
    race, slots, ran = Race(max_repeats=3), 3, []
    truth = {f"c{index}": draw.gauss(60, 5) for index in range(100)}
    fresh = iter(truth)
    running: list[tuple[str, int]] = []
    while len(ran) < 60:
        while len(running) < slots:
            repeat = race.next_repeat()
            if repeat is None:
                config_id = next(fresh)
                repeat = Repeat(config_id, {"c": config_id}, race.next_index(config_id))
            else:
                assert race.state(repeat.config_id) != DROPPED
            race.started(repeat.config_id, repeat.params, repeat.repeat)
            running.append((repeat.config_id, repeat.repeat))
            ran.append((repeat.config_id, repeat.repeat))
        config_id, repeat = running.pop(draw.randrange(len(running)))
        value = None if draw.random() < 0.1 else truth[config_id] + draw.gauss(0, 4)
        race.finished(config_id, repeat, value)
    for config_id, repeat in running:
        race.finished(config_id, repeat, truth[config_id])
    assert len(set(ran)) == len(ran)
    assert all(repeat < race.max_repeats for _, repeat in ran)
    assert any(repeat == 2 for _, repeat in ran)  # some race went to the third seed
    assert not race.running()


def test_a_dropped_config_is_not_the_incumbent_though_a_new_seed_gave_it_the_most():
    # B loses its first paired seed; the sampler proposes it again and its second seed scores
    # high, but on the seed it shares with A it is still worse: it stays dropped. Counted, its
    # 2 seeds would beat A's 1 (bench/search_quality.py: 14 of 30 random-search incumbents were
    # dropped configs).
    race = Race(max_repeats=3)
    race.started("A", {"x": 1}, 0)
    race.finished("A", 0, 50.0)
    for value in (40.0, 100.0):
        repeat = race.next_index("B")
        race.started("B", {"x": 2}, repeat)
        race.finished("B", repeat, value)

    assert race.state("B") == DROPPED and race.summary() == {"A": (50.0, 1), "B": (70.0, 2)}
    assert race.incumbent() == "A"


def test_seeds_past_the_cap_do_not_make_a_config_the_incumbent():
    # --repeats 1: every config is meant to get one seed. The sampler proposes B four times, so B
    # has 4 seeds, but counts 1 toward "the most seeds": A's better mean wins.
    race = Race(repeats=1)
    race.started("A", {}, 0)
    race.finished("A", 0, 50.0)
    for value in (40.0, 41.0, 42.0, 43.0):
        repeat = race.next_index("B")
        race.started("B", {}, repeat)
        race.finished("B", repeat, value)

    assert race.summary() == {"A": (50.0, 1), "B": (41.5, 4)}
    assert race.incumbent() == "A"
    assert seed_cap(1, 3) == 1 and seed_cap("auto", 4) == 4
    assert incumbent_of(race.summary(), "max") == "B" and incumbent_of(race.summary(), "max", cap=1) == "A"
