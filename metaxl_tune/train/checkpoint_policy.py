"""When a run writes a resume checkpoint: every N epochs, or every N minutes at an epoch end.

The rule, stated once:

- ``--checkpoint-every N`` (an integer): after every N-th epoch (N, 2N, ...).
- ``--checkpoint-every Nm`` (minutes): after the first epoch that ends at least N minutes after
  the last resume checkpoint (or after the run started or resumed). Checkpoints are taken only
  at epoch ends, so this is "every epoch or every N minutes, whichever is later".
- The default is ``10m``: at most one resume checkpoint per 10 minutes and never more than one
  per epoch. At paper scale (XLM-R base, ~3.3 GB of state) a 20-epoch trial then writes a
  handful of checkpoints instead of 20.
- The final epoch always gets one, whatever the setting: a finished trial keeps its end state.

Losing a node costs at most the work since the last resume checkpoint. The best-dev weights are
kept separately (``checkpoint.BEST_FILE``) and do not depend on this policy.
"""

from __future__ import annotations

import time
from typing import Callable

from metaxl_tune.config.checkpoint_every import DEFAULT_CHECKPOINT_EVERY, CheckpointEvery  # noqa: F401 - DEFAULT re-exported


class CheckpointPolicy:
    """Decides, at each epoch end, whether to write a resume checkpoint (see the module rule).

    ``clock`` is injectable so that the byte-count benchmark and tests can simulate epoch
    durations; training uses the monotonic clock.
    """

    def __init__(self, every: CheckpointEvery | str, total_epochs: int, *, clock: Callable[[], float] = time.monotonic):
        self.every = every if isinstance(every, CheckpointEvery) else CheckpointEvery.parse(every)
        self.total_epochs = total_epochs
        self.clock = clock
        self._last = clock()

    def due(self, epoch: int) -> bool:
        if epoch >= self.total_epochs:
            return True
        if self.every.epochs is not None:
            return epoch % self.every.epochs == 0
        return self.clock() - self._last >= self.every.minutes * 60.0

    def taken(self) -> None:
        """Record that a resume checkpoint was just written (the minute clock restarts)."""
        self._last = self.clock()
