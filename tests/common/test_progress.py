"""Progress: a bar on a terminal, a line at each quarter elsewhere (metaxl_tune/common/progress.py)."""

from __future__ import annotations

import io
import os

from metaxl_tune.common.progress import progress


def test_off_a_terminal_it_says_each_quarter_on_a_plain_line_with_its_postfix():
    stream = io.StringIO()
    bar = progress(range(10), total=10, desc="pre-training", stream=stream)
    for step in bar:
        if step == 4:
            bar.set_postfix(mlm_loss="6.123")
    assert stream.getvalue().splitlines() == [
        "pre-training: 2/10 steps", "pre-training: 5/10 steps (mlm_loss=6.123)",
        "pre-training: 7/10 steps (mlm_loss=6.123)", "pre-training: 10/10 steps (mlm_loss=6.123)",
    ]
    assert "\r" not in stream.getvalue()


def test_fewer_steps_than_quarters_say_each_step_once():
    stream = io.StringIO()
    list(progress(range(2), total=2, desc="d", stream=stream))
    assert stream.getvalue().splitlines() == ["d: 1/2 steps", "d: 2/2 steps"]


def test_disabled_or_without_quarters_it_says_nothing_and_yields_everything():
    stream = io.StringIO()
    assert list(progress(range(5), total=5, desc="d", enabled=False, stream=stream)) == list(range(5))
    assert list(progress(range(5), total=5, desc="d", quarters=False, stream=stream)) == list(range(5))
    assert stream.getvalue() == ""


def test_on_a_terminal_it_draws_a_bar():
    leader, follower = os.openpty()
    with open(follower, "w") as terminal:
        list(progress(range(3), total=3, desc="epoch 1/3", stream=terminal))
        terminal.flush()
    drawn = os.read(leader, 65536).decode(errors="replace")
    os.close(leader)
    assert "epoch 1/3" in drawn and "3/3" in drawn and "\r" in drawn
