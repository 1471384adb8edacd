"""Seeded sampling of training sets, independent of every global random state."""

from __future__ import annotations

import random

from metaxl_tune.data.errors import DataError


def sample(examples: list, size: int, seed: int) -> list:
    """``size`` examples drawn without replacement, the same for the same seed and input.

    One seeded permutation is cut to length, so with a fixed seed a smaller sample is a
    prefix of a larger one (the 5k source set lies inside the 10k one). A size at or above
    ``len(examples)`` returns all of them, in the seed's order.
    """
    if size < 0:
        raise ValueError(f"sample size must be >= 0 (got {size})")
    if not examples:
        raise DataError("cannot sample from an empty split; check the data directory or --data")
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    return [examples[index] for index in order[:size]]
