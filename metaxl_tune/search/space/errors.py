"""How a search space reports a mistake: one line ``file: key: what is wrong``.

:class:`SpaceError` is what callers catch (a :class:`~metaxl_tune.config.ConfigError`, so the
CLI prints it and exits 2). :class:`SpaceProblem` is what the schema's validators raise inside
pydantic, carrying the key below the value they check; ``space_file.read_space_file`` turns
the first one into a SpaceError.
"""

from __future__ import annotations

import difflib
from typing import Any, Iterable

from metaxl_tune.config import ConfigError

__all__ = ["SpaceError", "SpaceProblem", "closest", "show"]


class SpaceError(ConfigError):
    """A search space is invalid; the message is one line ``file: key: what is wrong``."""


class SpaceProblem(ValueError):
    """A validator's finding about ``key`` below the value it checks (``low``, ``values[1]``,
    ``rtn_layers``; empty for the value itself); pydantic adds where that value is."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


def show(value: Any) -> str:
    """A value as the messages quote it: floats short (``1e-05``), strings quoted."""
    return f"{value:g}" if isinstance(value, float) else repr(value) if isinstance(value, str) else str(value)


def closest(name: str, known: Iterable[str]) -> str:
    """`` (did you mean X?)`` for the nearest known name, or nothing."""
    match = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {match[0]}?)" if match else ""
