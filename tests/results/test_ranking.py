"""Reading searches back: the learned mixture weights shown by `best`."""

from __future__ import annotations

from metaxl_tune.results.ranking import mixture_weights


def test_mixture_weights_lists_placements_in_layer_order():
    metrics = {"best_dev_f1": 71.0, "rtn_mix_12": 0.6, "rtn_mix_2": 0.15, "rtn_mix_0": 0.25}
    assert mixture_weights(metrics) == "0:0.25 2:0.15 12:0.60"
    assert mixture_weights({"best_dev_f1": 71.0}) == ""
