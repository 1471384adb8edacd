"""Which examples each training step uses: the source streams, the stream of each step
(source_sampler.py) and the rows of the source and target batches, epoch by epoch.

The batch order is a pure function of the config's seed, the epoch and the source sampler's
state (kept in the checkpoint), so a resumed run trains on exactly the batches a straight run
would have.
"""

from __future__ import annotations

import math
from typing import Iterator

import torch

from metaxl_tune.config import RunConfig
from metaxl_tune.data.encoding import Batcher
from metaxl_tune.train.prepare import PreparedData
from metaxl_tune.train.source_sampler import MIXED, SourceSchedule


class EpochBatches:
    """The batch plan of one run over its prepared data."""

    def __init__(self, config: RunConfig, data: PreparedData):
        self.config = config
        self.target_size = len(data.target_train)
        # The streams source batches are drawn from: for mixed (mtrain.py: merge_data) one set
        # joining every language's sample in language order, else one per language.
        trains = data.source_trains
        self.source_streams = [Batcher.concatenate(trains)] if config.source_strategy == MIXED and trains else trains
        # The source language of each row of each stream (per-language example counts).
        self.stream_languages = (
            [[language for language, batcher in enumerate(trains) for _ in range(len(batcher))]]
            if config.source_strategy == MIXED and trains
            else [[language] * len(batcher) for language, batcher in enumerate(trains)]
        )
        # Which stream each step uses (source_sampler); a stream's batch count is its size over
        # the batch size (a last, smaller batch included), so an epoch passes once over every
        # source example.
        self.sources = SourceSchedule(
            config.source_strategy,
            [math.ceil(len(stream) / config.batch_size) for stream in self.source_streams] or [1],
            seed=config.seed,
        )

    @property
    def steps_per_epoch(self) -> int:
        # An epoch is one pass over every source language's sample (the target batches cycle),
        # or over the target sample for target-only training.
        if not self.config.uses_source:
            return math.ceil(self.target_size / self.config.batch_size)
        return self.sources.steps_per_epoch

    @property
    def schedule_steps(self) -> float:
        """The length of the warm-up schedules. The reference (mtrain.py) counts it as the merged
        source set's size times the epochs over the batch size, a fraction (not the batch count,
        which rounds each epoch's last, smaller batch up); mixed restates that. The strategies
        with one stream per language (our extensions) count their steps: epochs x batches."""
        if self.config.uses_source and self.config.source_strategy == MIXED:
            return self.config.epochs * len(self.source_streams[0]) / self.config.batch_size
        return self.config.epochs * self.steps_per_epoch

    def plan(self, epoch: int) -> Iterator[tuple[int | None, list[int] | None, list[int]]]:
        """(source stream index, row indices in that stream, target indices) per step.

        A stream is one source language, or for mixed every language merged: one shuffled pass
        over the merged set an epoch, its last batch smaller, as the reference's DataLoader
        (shuffle=True, no drop_last) over ``merge_data``'s set. Target batches are full batches
        of a stream of shuffled passes over the target sample, drawn afresh each epoch; the
        reference's target iterator instead keeps its place across epochs and ends each pass
        with a smaller batch.

        Batch order is a pure function of (seed, epoch) and, for the bandit, of the sampler
        state at the epoch's start (saved in the checkpoint), so a resumed run is identical.
        """
        generator = torch.Generator().manual_seed(self.config.seed * 100_003 + epoch)
        size, steps = self.config.batch_size, self.steps_per_epoch
        n_target = self.target_size
        target_stream: list[int] = []
        while len(target_stream) < steps * size:
            target_stream += torch.randperm(n_target, generator=generator).tolist()
        if not self.config.uses_source:
            order = target_stream[:n_target]
            for start in range(0, n_target, size):
                yield None, None, order[start : start + size]
            return
        # One shuffled pass per stream, drawn in stream order (a single source draws exactly
        # what the single-source loop always drew). Sampled strategies may ask a language for
        # more batches than it has: it then starts another shuffled pass.
        orders = [torch.randperm(len(b), generator=generator).tolist() for b in self.source_streams]
        cursors = [0] * len(orders)
        for step, language in enumerate(self.sources.languages(epoch)):
            if cursors[language] >= len(orders[language]):
                orders[language] = torch.randperm(len(orders[language]), generator=generator).tolist()
                cursors[language] = 0
            source = orders[language][cursors[language] : cursors[language] + size]
            cursors[language] += size
            yield language, source, target_stream[step * size : (step + 1) * size]
