from __future__ import annotations

import random

import pytest

from metaxl_tune.data import DataError, sample

ITEMS = list(range(1000))


def test_same_seed_gives_the_same_sample_whatever_the_global_random_state():
    random.seed(1)
    first = sample(ITEMS, 100, seed=7)
    random.seed(2)
    assert sample(ITEMS, 100, seed=7) == first


def test_sample_is_without_replacement():
    assert len(set(sample(ITEMS, 500, seed=0))) == 500


def test_different_seeds_give_different_samples():
    assert sample(ITEMS, 100, seed=1) != sample(ITEMS, 100, seed=2)


def test_smaller_sample_is_a_prefix_of_a_larger_one():
    assert sample(ITEMS, 500, seed=3)[:100] == sample(ITEMS, 100, seed=3)


def test_size_beyond_the_data_returns_everything_in_seed_order():
    drawn = sample(ITEMS, 5000, seed=4)
    assert sorted(drawn) == ITEMS and drawn != ITEMS and drawn == sample(ITEMS, 1000, seed=4)


def test_sampling_an_empty_split_is_a_data_error():
    with pytest.raises(DataError, match="empty split"):
        sample([], 10, seed=0)
