"""Seeded sampling of training sets, independent of every global random state."""

from __future__ import annotations

import random
from array import array

from metaxl_tune.data.errors import DataError


def sample_indices(count: int, size: int, seed: int) -> list[int]:
    """The positions of ``size`` of ``count`` examples drawn without replacement, the same for
    the same seed and count.

    One seeded permutation is cut to length, so with a fixed seed a smaller sample is a prefix
    of a larger one (the 5k source set lies inside the 10k one). A size at or above ``count``
    returns every position, in the seed's order. The permutation is shuffled in a 4-byte array,
    not a list (about 36 bytes an entry): the same draws as ``random.shuffle`` of
    ``list(range(count))``, so a seed keeps drawing the samples it drew before streaming, while
    a 1 GB file's ten million sentences cost 40 MB, not 360 MB. (A draw that needs no
    permutation at all, such as reservoir sampling, would change every seed's sample.)
    """
    if size < 0:
        raise ValueError(f"sample size must be >= 0 (got {size})")
    if count <= 0:
        raise DataError("cannot sample from an empty split; check the data directory or --data")
    order = array("I" if count <= 0xFFFFFFFF else "Q", range(count))
    random.Random(seed).shuffle(order)
    return order[:size].tolist()


def sample(examples: list, size: int, seed: int) -> list:
    """``size`` examples drawn without replacement: ``examples`` at ``sample_indices``."""
    if size < 0:
        raise ValueError(f"sample size must be >= 0 (got {size})")
    return [examples[index] for index in sample_indices(len(examples), size, seed)]
