"""Documented seams of ``run_search`` for benchmarks and embedding programs.

``run_search(options, hooks=SearchHooks(...))`` runs the real search (checks, data cache,
Optuna, Tune, MLflow, persistence) with two substitutions, and nothing else changed:

- ``trial``: the function each trial runs instead of
  ``metaxl_tune.search.execution.trainable.train_trial``. It is called exactly as ``train_trial`` is,
  ``trial(sampled, *, configs, cache_dir, cpus, gpus, storage_retry_s)`` (``configs`` turns
  ``sampled`` into the trial's RunConfig), and reports through ``tune.report`` like it. It
  must be picklable (Tune ships it to the workers). The benches use it for a trial that sleeps
  instead of training, so what they time is the orchestration.
- ``callbacks``: extra Tune callbacks, placed before the search's own (MLflow, progress,
  storage watch), so they see each event first: the benches' timing marks.

Without hooks (the CLI) the search runs ``train_trial`` and its own callbacks only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence


@dataclass(frozen=True)
class SearchHooks:
    trial: Callable[..., None] | None = None
    """Replaces train_trial (same call, see the module docstring); None: train_trial."""
    callbacks: Sequence[Any] = ()
    """Tune callbacks run before the search's own."""

    def trial_function(self, default: Callable[..., None]) -> Callable[..., None]:
        return self.trial if self.trial is not None else default

    def with_callbacks(self, own: list) -> list:
        return [*self.callbacks, *own]


NO_HOOKS = SearchHooks()
