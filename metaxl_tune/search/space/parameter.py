"""One sampled RunConfig field of a validated space: how Optuna asks for it, and its values.

``Parameter`` is built by :mod:`metaxl_tune.search.space.space_file` from a checked spec and
held by :class:`~metaxl_tune.search.space.schema.SearchSpace`. Ray Tune pickles both into the
searcher's state (the searcher holds ``SearchSpace.sample``), so a resumed search unpickles
them: their fields stay as they are, and the class stays importable as
``metaxl_tune.search.space.Parameter`` (the release before the package move) and
``metaxl_tune.search.space.schema.Parameter``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

__all__ = ["Parameter"]


@dataclass(frozen=True)
class Parameter:
    """One sampled RunConfig field (the schema is in :mod:`metaxl_tune.search.space.space_file`)."""

    name: str
    type: str
    low: float | int | None = None
    high: float | int | None = None
    step: int = 1
    log: bool = False
    values: tuple[Any, ...] = ()
    when: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    def active(self, assignment: Mapping[str, Any]) -> bool:
        """Whether every ``when`` field has one of its allowed values in ``assignment``."""
        return all(name in assignment and assignment[name] in allowed for name, allowed in self.when.items())

    def suggest(self, trial: Any) -> Any:
        """Ask an ``optuna.Trial`` (or Ray's wrapper around one) for this parameter's value."""
        if self.type == "categorical":
            return trial.suggest_categorical(self.name, list(self.values))
        if self.type == "int":
            return trial.suggest_int(self.name, self.low, self.high, step=self.step, log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, log=self.type == "loguniform")

    def corners(self) -> tuple[Any, ...]:
        """The values validation tries: every categorical value, or both bounds."""
        return self.values if self.type == "categorical" else tuple(dict.fromkeys((self.low, self.high)))

    def grid_values(self) -> tuple[Any, ...] | None:
        """Every value a grid visits, or None for continuous parameters."""
        if self.type == "categorical":
            return self.values
        if self.type == "int":
            return tuple(range(self.low, self.high + 1, 1 if self.log else self.step))
        return None
