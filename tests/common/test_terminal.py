"""Plain-terminal tables: short numbers, placement labels, columns dropped instead of cells cut."""

from __future__ import annotations

import pytest

from metaxl_tune.common.terminal import Column, display_value, render_table, short_ids, short_number


@pytest.mark.parametrize(("value", "text"), [
    (0.000123456, "1.2e-4"), (3e-05, "3e-5"), (28.4999, "28.5"), (16.0, "16"), (0.5, "0.5"), (250000.5, "2.5e5"),
])
def test_short_number(value, text):
    assert short_number(value) == text


@pytest.mark.parametrize(("value", "text"), [
    ("[0, 'last']", "emb+last"), ("['middle']", "middle"), ("[0, 6]", "emb+6"), ("True", "true"),
    ("6.8594164113287e-4", "6.9e-4"), ("related", "related"),
])
def test_display_value(value, text):
    assert display_value(value) == text


def test_short_ids_strip_the_shared_prefix_up_to_an_underscore():
    assert short_ids(["ab12c_00001", "ab12c_00012"]) == ["00001", "00012"]
    assert short_ids(["189f403f", "8aa8b10b"]) == ["189f403f", "8aa8b10b"]


def columns():
    return [
        Column("#", ["1", "2"]),
        Column("outcome", ["completed", "pruned"], align="left", keep=1),
        Column("trial", ["00001", "00002"], align="left", keep=2),
        Column("best_dev_f1", ["28.50", "12.90"]),
        Column("rtn_detach_input", ["false", "true"], align="left"),
    ]


def test_a_wide_enough_table_shows_every_column_with_headers_wrapped_at_underscores():
    assert render_table(columns(), width=80) == (
        "                     best_  rtn_\n"
        "                      dev_  detach_\n"
        "#  outcome    trial     f1  input\n"
        "-  ---------  -----  -----  -------\n"
        "1  completed  00001  28.50  false\n"
        "2  pruned     00002  12.90  true\n"
    )


def test_least_important_columns_are_dropped_first_and_cells_are_never_cut():
    assert render_table(columns(), width=20) == (
        "   best_  rtn_\n"
        "    dev_  detach_\n"
        "#     f1  input\n"
        "-  -----  -------\n"
        "1  28.50  false\n"
        "2  12.90  true\n"
        "(not shown at this width: outcome, trial; --wide shows every column)\n"
    )


def test_essential_columns_stay_even_when_too_wide_and_wide_shows_everything():
    assert "rtn_" in render_table(columns(), width=5)
    assert "outcome" in render_table(columns(), width=5, wide=True)
