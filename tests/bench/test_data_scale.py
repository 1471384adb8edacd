"""bench/data_scale.py at small sizes: it runs end to end, and peak memory stays flat as the file grows.

Before splits were streams, preparing the 8 MB file took over twice the peak memory of the 1 MB
one (all its sentences in memory, and the tiny tokenizer trained on every one of them)."""

from __future__ import annotations

import pytest

from bench_scripts import run_bench


@pytest.fixture(scope="module")
def summary():
    return run_bench("data_scale", ["--sizes-mb", "1,8"])


def test_each_size_prepares_the_sizes_asked(summary):
    assert [row["size_mb"] for row in summary["rows"]] == [1.0, 8.0]
    assert all(row["sizes"] == {"source": {}, "target_train": 10, "target_dev": 500, "target_test": 500}
               for row in summary["rows"])
    assert 7_900_000 < summary["rows"][1]["file_bytes"] <= 8_000_000


def test_peak_memory_is_flat_in_the_file_size(summary):
    assert summary["flat"] and summary["rss_ratio"] <= 1.5
    assert summary["rows"][0]["peak_rss_mib"] >= summary["imports_only_rss_mib"]
