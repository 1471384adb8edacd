"""Study helpers: dry-run estimates."""

from __future__ import annotations

import pytest

from metaxl_tune.config import RunConfig
from metaxl_tune.search.study import estimated_seconds


def test_estimate_counts_every_source_languages_sample():
    one = RunConfig(model="tiny", target="tk", source="en", source_size=160, batch_size=16, epochs=2)
    two = one.replace(source="en,related")
    assert estimated_seconds(one) == pytest.approx(2 * 10 * 0.08 * 1.55)
    assert estimated_seconds(two) == pytest.approx(2 * estimated_seconds(one))
