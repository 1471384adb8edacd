"""The search's progress lines fit an 80-column terminal without cutting a number."""

from __future__ import annotations

from metaxl_tune.search.callbacks import best_lines, progress_line


def test_progress_line_is_short_and_names_the_best_value():
    line = progress_line(2, {"completed": 113, "pruned": 41, "failed": 0}, 256, 71.1349)
    assert line == "[search] 2 running, 113 finished, 41 pruned, 0 failed of 256 | best 71.13"
    assert len(line) <= 80


def test_new_best_lines_wrap_every_searched_value_at_80_columns():
    params = {"meta_lr": 0.00068594164113287, "rtn_bottleneck": 384, "rtn_layers": "emb+last",
              "source": "related", "rtn_detach_input": True}
    lines = best_lines("best_dev_f1", 28.4999, "5ee49d56", params)
    assert lines == [
        "[search] new best best_dev_f1 28.50 (trial 5ee49d56): meta_lr=6.9e-4",
        "         rtn_bottleneck=384 rtn_layers=emb+last source=related",
        "         rtn_detach_input=true",
    ]
