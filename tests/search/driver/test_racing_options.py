"""A search's racing options: saved with its options (a resume races as it started), checked before
anything of the search is made, and the grid's limit counting a config's seeds."""

from __future__ import annotations

import json

import pytest

from metaxl_tune.search.driver.options import OPTIONS_FILE, SearchError, SearchOptions, check_driver_options
from metaxl_tune.search.space.racing import REPEATS_AUTO
from metaxl_tune.search.space.schema import load_space
from metaxl_tune.search.space.strategy import StrategyError, check_sampler


def test_racing_options_are_saved_and_read_back(tmp_path):
    options = SearchOptions(name="raced", storage=str(tmp_path), repeats=2, max_repeats=4)
    options.save()
    loaded = SearchOptions.load(str(tmp_path), "raced")
    assert (loaded.repeats, loaded.max_repeats) == (2, 4)


def test_a_search_saved_before_racing_resumes_with_one_seed_per_config(tmp_path):
    options = SearchOptions(name="old", storage=str(tmp_path))
    options.save()
    saved = json.loads((options.experiment_dir / OPTIONS_FILE).read_text())
    del saved["repeats"], saved["max_repeats"]
    (options.experiment_dir / OPTIONS_FILE).write_text(json.dumps(saved))
    assert SearchOptions.load(str(tmp_path), "old").repeats == 1
    assert SearchOptions(name="new").repeats == REPEATS_AUTO


def test_repeats_are_normalised_by_the_driver_check():
    options = SearchOptions(name="n", repeats="3")
    check_driver_options(options)
    assert options.repeats == 3
    with pytest.raises(SearchError, match=r"^--max-repeats must be an integer >= 1 \(got 0\)$"):
        check_driver_options(SearchOptions(name="n", max_repeats=0))


def test_the_grid_allows_as_many_trials_as_its_points_times_a_configs_seeds():
    space = load_space("paper-grid")
    check_sampler("grid", space, 48 * 3, runs_per_config=3)
    with pytest.raises(StrategyError, match="runs each at most 3 times .*use --num-samples 144 or fewer"):
        check_sampler("grid", space, 145, runs_per_config=3)
