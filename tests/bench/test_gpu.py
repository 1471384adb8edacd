"""bench/gpu.py at its smallest settings: the matrix runs end to end and its figures are coherent."""

from __future__ import annotations

import pytest

from bench_scripts import run_bench
from metaxl_tune.config import RunConfig


@pytest.fixture(scope="module")
def summary():
    return run_bench("gpu", ["--model", "tiny", "--device", "cpu", "--smoke"])


def test_every_method_and_precision_has_a_ratio_a_peak_and_a_trial_count(summary):
    methods = ["jt", "metaxl", "metaxl-algorithm1"]
    if "hypergradient" in RunConfig.model_fields:
        methods.append("metaxl-fd")
    else:
        assert summary["skipped"] == ["metaxl-fd: skipped, RunConfig has no field hypergradient in this version"]
    names = {f"{method}/{precision}" for method in methods for precision in ("fp32", "bf16")}
    assert set(summary["results"]["16"]) == names
    assert set(summary["max_trials_per_80gb"]) == names
    ratios = summary["ratio_over_fastest_jt"]["16"]
    assert min(ratios["jt/fp32"], ratios["jt/bf16"]) == 1.0  # the fastest jt over itself
    assert all(ratio > 0 for ratio in ratios.values())


def test_metaxl_holds_more_memory_than_jt_at_the_same_precision(summary):
    # Counted, not sampled: the look-ahead keeps the first forward's graph and the
    # create_graph gradient alive, on top of JT's activations and an RTN's Adam state.
    peaks = summary["peak_mib"]["16"]
    for precision in ("fp32", "bf16"):
        assert peaks[f"metaxl/{precision}"] > peaks[f"jt/{precision}"] > 0
        assert peaks[f"metaxl-algorithm1/{precision}"] > peaks[f"jt/{precision}"]
