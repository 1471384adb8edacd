"""Splits read on demand: a run holds the examples it uses, never a whole file.

A split is an `ExampleStream`: iterating it reads (and checks) its file again from the start;
``len()`` counts its examples in one checking pass and remembers the count; ``take(indices)``
reads once more and keeps only the examples at those positions. So a run that samples 100
sentences from a 1 GB file holds 100 sentences (and, to draw them, one 4-byte index per
sentence of the file; see `sampling`), and the tiny tokenizer trains on a bounded sample.
In-memory data (the synthetic generator) and memory-mapped tables (`datasets`) are streams too.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence

from metaxl_tune.data.examples import Splits

_CHUNK = 50_000
"""Examples an index-selected stream materialises at a time while it is iterated."""


class ExampleStream:
    """One split's examples, in order. ``read`` returns a fresh iterator over them each call,
    raising a DataError (file and line) where the data is bad; ``count`` (optional) is a cheaper
    checking pass that returns the number of examples."""

    def __init__(self, where: str, read: Callable[[], Iterator], count: Callable[[], int] | None = None):
        self.where = where
        self._read = read
        self._count_pass = count
        self._count: int | None = None

    def __iter__(self) -> Iterator:
        return self._read()

    def __len__(self) -> int:
        if self._count is None:
            self._count = self._count_pass() if self._count_pass is not None else sum(1 for _ in self._read())
        return self._count

    def take(self, indices: Sequence[int]) -> list:
        """The examples at ``indices`` (distinct, each below ``len(self)``), in that order, read
        in one pass that stops after the last one."""
        if not indices:
            return []
        slots = {index: slot for slot, index in enumerate(indices)}
        chosen: list = [None] * len(indices)
        last, reached = max(indices), -1
        for reached, example in enumerate(self._read()):
            slot = slots.get(reached)
            if slot is not None:
                chosen[slot] = example
            if reached >= last:
                return chosen
        raise IndexError(f"{self.where}: example {last} asked for, but the split holds {reached + 1}")


class ListStream(ExampleStream):
    """Examples already in memory (generated data, small index-chosen splits)."""

    def __init__(self, where: str, examples: Sequence):
        super().__init__(where, lambda: iter(examples), lambda: len(examples))
        self._examples = examples

    def take(self, indices: Sequence[int]) -> list:
        return [self._examples[index] for index in indices]


class SelectedStream(ExampleStream):
    """The examples of ``parts`` at chosen positions, part after part: ``parts`` is a list of
    (stream, positions) and example ``i`` of this stream is ``stream.take([positions[i]])`` of its
    part. Positions are kept as 4-byte indices, so a shuffled split of a large file costs four
    bytes an example, not the example."""

    def __init__(self, where: str, parts: Sequence[tuple[ExampleStream, array]]):
        self._parts = list(parts)
        total = sum(len(positions) for _, positions in self._parts)
        super().__init__(where, self._iterate, lambda: total)

    def _iterate(self) -> Iterator:
        for start in range(0, len(self), _CHUNK):
            yield from self.take(range(start, min(start + _CHUNK, len(self))))

    def take(self, indices: Sequence[int]) -> list:
        chosen: list = [None] * len(indices)
        offset = 0
        for stream, positions in self._parts:
            wanted = [(slot, positions[index - offset]) for slot, index in enumerate(indices)
                      if offset <= index < offset + len(positions)]
            for (slot, _), example in zip(wanted, stream.take([position for _, position in wanted])):
                chosen[slot] = example
            offset += len(positions)
        return chosen


class SplitStreams(Splits[ExampleStream]):
    """The three splits of one language as streams (``Splits`` of lists is what ``load_splits`` reads them into)."""


def take_sorted(streams: Iterable[ExampleStream], indices: Sequence[int]) -> list:
    """Examples at ``indices`` (sorted, distinct) of the streams read one after another."""
    chosen, offset = [], 0
    for stream in streams:
        size = len(stream)
        mine = [index - offset for index in indices if offset <= index < offset + size]
        chosen.extend(stream.take(mine))
        offset += size
    return chosen
