"""The resume-checkpoint rule: every N epochs, or every N minutes at an epoch end; always the last."""

from __future__ import annotations

import pytest

from metaxl_tune.train.checkpoint_policy import DEFAULT_CHECKPOINT_EVERY, CheckpointEvery, CheckpointPolicy
from metaxl_tune.config import ConfigError, build_config


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def checkpointed(policy: CheckpointPolicy, clock: Clock, epoch_seconds: float) -> list[int]:
    taken = []
    for epoch in range(1, policy.total_epochs + 1):
        clock.now += epoch_seconds
        if policy.due(epoch):
            policy.taken()
            taken.append(epoch)
    return taken


def test_every_two_epochs_and_always_the_last():
    clock = Clock()
    assert checkpointed(CheckpointPolicy("2", 7, clock=clock), clock, 1.0) == [2, 4, 6, 7]


def test_default_is_ten_minutes_but_never_more_than_once_an_epoch():
    assert DEFAULT_CHECKPOINT_EVERY == "10m"
    clock = Clock()
    # 4-minute epochs: the first epoch end at least 10 minutes after the last checkpoint.
    assert checkpointed(CheckpointPolicy("10m", 20, clock=clock), clock, 240.0) == [3, 6, 9, 12, 15, 18, 20]
    clock = Clock()
    # 15-minute epochs: every epoch, no more.
    assert checkpointed(CheckpointPolicy("10m", 4, clock=clock), clock, 900.0) == [1, 2, 3, 4]
    clock = Clock()
    # Seconds-long epochs (a CPU demo): only the final epoch.
    assert checkpointed(CheckpointPolicy("10m", 20, clock=clock), clock, 5.0) == [20]


@pytest.mark.parametrize("text, parsed", [("2", CheckpointEvery(epochs=2)), (3, CheckpointEvery(epochs=3)),
                                          ("10m", CheckpointEvery(minutes=10)), ("2.5 min", CheckpointEvery(minutes=2.5))])
def test_parse(text, parsed):
    assert CheckpointEvery.parse(text) == parsed


@pytest.mark.parametrize("text", ["0", "1.5", "0m", "often", "10s", ""])
def test_bad_values_are_one_line_naming_the_field(text):
    with pytest.raises(ConfigError, match=r"^config: checkpoint_every: .*(epochs|minutes)") as error:
        build_config({"checkpoint_every": text})
    assert "\n" not in str(error.value)
