"""Placement labels: readable names that become RunConfig.rtn_layers for any model depth."""

from __future__ import annotations

import pytest

from metaxl_tune.search.space.placement import placement_label, resolve_placement


@pytest.mark.parametrize(
    ("label", "layers"),
    [("emb", [0]), ("middle", ["middle"]), ("last", ["last"]), ("emb+last", [0, "last"]), ("0+6", [0, 6]), ("6", [6])],
)
def test_label_resolves_to_rtn_layers(label, layers):
    assert resolve_placement(label) == layers


def test_lists_and_ints_get_plus_joined_labels():
    assert placement_label([0, 6]) == "0+6"
    assert placement_label(6) == "6"
    assert placement_label(" emb + last ") == "emb+last"


def test_unknown_placement_names_the_choices():
    with pytest.raises(ValueError, match="'top' is not a placement; use emb, middle, last"):
        placement_label("emb+top")
