"""Source-language schedules: the order of each strategy, and the bandit's learning and state."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from metaxl_tune.train.checkpoint import load_checkpoint, save_checkpoint
from metaxl_tune.train.source_sampler import SourceSchedule, loss_decrease_reward


def test_mixed_draws_every_batch_of_its_one_merged_stream():
    # mtrain.py: merge_data joins the languages into one set, so its loop has one loader.
    assert list(SourceSchedule("mixed", [5], seed=1).languages(1)) == [0] * 5


def test_mixed_refuses_one_stream_per_language():
    with pytest.raises(ValueError, match="source_strategy mixed schedules one merged stream"):
        SourceSchedule("mixed", [3, 2], seed=1)


def test_sequential_runs_each_language_to_the_end_in_order():
    schedule = SourceSchedule("sequential", [3, 2], seed=1)
    assert list(schedule.languages(1)) == [0, 0, 0, 1, 1]
    assert list(schedule.languages(2)) == [0, 0, 0, 1, 1]


def test_round_robin_alternates_and_uses_every_batch_once():
    schedule = SourceSchedule("round-robin", [3, 1, 2], seed=1)
    assert list(schedule.languages(1)) == [0, 1, 2, 0, 2, 0]


def test_uniform_is_deterministic_by_seed_and_epoch():
    draw = lambda seed, epoch: list(SourceSchedule("uniform", [20, 20], seed=seed).languages(epoch))  # noqa: E731
    first = draw(3, 1)
    assert len(first) == 40 and set(first) == {0, 1}
    assert draw(3, 1) == first
    assert draw(3, 2) != first
    assert draw(4, 1) != first


def test_bandit_moves_probability_to_the_language_with_larger_reward():
    schedule = SourceSchedule("bandit", [100, 100], seed=0)
    for language in schedule.languages(1):
        schedule.update(language, 0.9 if language == 1 else 0.1)
    probabilities = schedule.probabilities()
    assert probabilities[1] > 0.9
    assert probabilities[0] >= schedule.gamma / 2  # exploration keeps gamma / K


def test_bandit_draws_follow_its_weights():
    schedule = SourceSchedule("bandit", [200, 200], seed=0)
    schedule.log_weights = [0.0, 5.0]
    counts = Counter(schedule.languages(1))
    assert counts[1] > 0.85 * 400


def test_loss_decrease_reward_maps_relative_decrease_to_unit_interval():
    assert loss_decrease_reward(2.0, 2.0) == 0.5
    assert loss_decrease_reward(2.0, 1.0) == 0.75
    assert loss_decrease_reward(2.0, 0.0) == 1.0
    assert loss_decrease_reward(1.0, 5.0) == 0.0
    assert loss_decrease_reward(1.0, float("nan")) == 0.0


def test_bandit_state_round_trips_through_a_checkpoint(tmp_path: Path):
    schedule = SourceSchedule("bandit", [10, 10], seed=5)
    losses = iter([3.0, 2.5, 2.6, 2.0, 1.9, 2.2, 1.5, 1.4, 1.6, 1.2] * 2)
    for language in schedule.languages(1):
        schedule.observe(language, next(losses))
    save_checkpoint(tmp_path, {"sources": schedule.state_dict()})

    restored = SourceSchedule("bandit", [10, 10], seed=5)
    restored.load_state_dict(load_checkpoint(tmp_path)["sources"])
    assert restored.log_weights == schedule.log_weights
    assert restored.previous_loss == schedule.previous_loss
    assert list(restored.languages(2)) == list(schedule.languages(2))


def test_loading_another_strategys_state_fails_with_one_line():
    state = SourceSchedule("bandit", [1, 1], seed=0).state_dict()
    with pytest.raises(ValueError, match="checkpoint holds a bandit sampler over 2"):
        SourceSchedule("uniform", [1, 1], seed=0).load_state_dict(state)
