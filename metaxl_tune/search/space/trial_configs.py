"""A trial's sampled values -> its RunConfig, in a module that imports neither torch nor Ray.

Tune unpickles this object in every trial worker; keeping it apart from ``trainable.py``
(torch) lets a trial body that does not train (``SearchHooks.trial``, the benches) start
without the torch import.
"""

from __future__ import annotations

from typing import Any

from metaxl_tune.config import RunConfig, build_config
from metaxl_tune.search.space.racing import RACE_KEYS
from metaxl_tune.search.space.schema import SearchSpace


class TrialConfigs:
    """Turns a trial's sampled values into its RunConfig (picklable; shipped to every trial)."""

    def __init__(self, base: RunConfig, space: SearchSpace):
        self.base = base.to_dict()
        self.space = space

    def __call__(self, sampled: dict[str, Any]) -> RunConfig:
        # A racing search's trial also names its config and repeat (racing.RACE_KEYS): not
        # RunConfig fields. Its training seed is the RunConfig's ``seed``.
        values = {name: value for name, value in sampled.items() if name not in RACE_KEYS}
        return self.space.to_run_config(build_config(self.base), values)
