"""WikiAnn from the hub: offline (as here and in CI) it must fail at once with a usable message."""

from __future__ import annotations

import time

import datasets
import pytest

from metaxl_tune.config import RunConfig
from metaxl_tune.data.hub import _hub_reachable


@pytest.fixture(scope="module")
def offline():
    if _hub_reachable():
        pytest.skip("the Hugging Face hub is reachable from here")


def test_unreachable_hub_fails_fast_and_says_what_to_pass(offline, load_error):
    start = time.monotonic()
    message = load_error(RunConfig(data="hub"), "tk")
    assert time.monotonic() - start < 10
    assert message == (
        "cannot reach the Hugging Face hub for unimelb-nlp/wikiann (tk); pass --data DIR with "
        "<DIR>/tk/{train,dev,test} in the panx layout, or --data synthetic"
    )


def test_offline_mode_without_a_cached_copy_says_so(monkeypatch, load_error):
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    message = load_error(RunConfig(data="hub"), "zz")
    assert "HF_HUB_OFFLINE is set but nothing is cached" in message and "--data synthetic" in message
