"""The value of ``checkpoint_every``: every N epochs, or every N minutes at an epoch end.

The rule that uses it (when a checkpoint is due) is train/checkpoint_policy.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_CHECKPOINT_EVERY = "10m"
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(m|min)?\s*$")


@dataclass(frozen=True)
class CheckpointEvery:
    """A parsed ``checkpoint_every``: exactly one of ``epochs`` and ``minutes`` is set."""

    epochs: int | None = None
    minutes: float | None = None

    @classmethod
    def parse(cls, text: str | int) -> "CheckpointEvery":
        match = _PATTERN.match(str(text))
        if match is None:
            raise ValueError(f"must be a number of epochs (e.g. 2) or of minutes (e.g. 10m); got {text!r}")
        number, unit = match.groups()
        if unit:
            minutes = float(number)
            if minutes <= 0:
                raise ValueError(f"minutes must be > 0 (got {text!r})")
            return cls(minutes=minutes)
        if "." in number or int(number) < 1:
            raise ValueError(f"epochs must be a positive integer (got {text!r}); minutes take an m, e.g. 10m")
        return cls(epochs=int(number))

    def __str__(self) -> str:
        return f"{self.epochs}" if self.epochs is not None else f"{self.minutes:g}m"
