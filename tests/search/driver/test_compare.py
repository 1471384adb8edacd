"""The demo's comparison table: target-only, JT and the search's winner, mean ± std, Δ vs JT."""

from __future__ import annotations

import pytest

from metaxl_tune.search.driver.compare import comparison_configs, comparison_table, values_by_setting
from metaxl_tune.config import RunConfig
from metaxl_tune.results.tracking import Tracker
from test_report import NAME, shared_store


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    return shared_store(tmp_path_factory)


def test_the_baselines_are_the_winner_with_another_method():
    winner = RunConfig(model="tiny-pretrained", data="synthetic", method="metaxl", meta_lr=1e-4, rtn_bottleneck=16)
    configs = comparison_configs(winner)
    assert list(configs) == ["target-only", "jt", "metaxl"] and configs["metaxl"] == winner
    assert configs["jt"] == winner.replace(method="jt") and configs["target-only"].meta_lr == 1e-4


def test_the_table_layout_from_a_tracked_comparison(store):
    tracker = Tracker(store, NAME)  # target-only, jt and metaxl over seeds 1 and 2, on two targets
    table = comparison_table(values_by_setting(tracker, "best_dev_f1"), values_by_setting(tracker, "best_test_f1"),
                             width=80)
    assert table == (
        "                                         Δ test\n"
        "setting            dev F1       test F1   vs jt\n"
        "-----------  ------------  ------------  ------\n"
        "target-only  47.25 ± 6.24  46.25 ± 6.24  -17.00\n"
        "jt           64.25 ± 3.23  63.25 ± 3.23\n"
        "metaxl       65.00 ± 2.16  64.00 ± 2.16   +0.75\n"
        "F1 in percent, mean ± std over 4 runs (seeds); test F1 at the best dev epoch\n"
    )
    assert all(len(line) <= 80 for line in table.splitlines())
