"""`--resume` continues what was started: a flag that would change it is refused, naming it.

A resumed search or ablation is rebuilt from its saved options (``metaxl-search.json``), so a
``--space``, ``--target`` or ``--num-samples`` typed next to ``--resume`` would otherwise be
dropped without a word. A flag that repeats the saved value changes nothing and passes, so
the command that started a search, with ``--resume`` added, continues it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

try:  # Typer >= 0.20 vendors Click as typer._click
    from typer._click.core import ParameterSource
except ImportError:  # pragma: no cover - older Typer on top of Click
    from click.core import ParameterSource

from metaxl_tune.common.secrets import mask_uri
from metaxl_tune.config import RunConfig

from .common import fail

_NOT_SAVED = object()


def given_values(ctx: typer.Context, overrides: dict[str, Any]) -> dict[str, Any]:
    """The parameters typed on the command line (not defaults), config fields parsed."""
    given = {}
    for name, value in ctx.params.items():
        if ctx.get_parameter_source(name) in (None, ParameterSource.DEFAULT):
            continue
        given[name] = overrides.get(name, value)
    return given


def saved_config_fields(base: dict[str, Any]) -> dict[str, Any]:
    """Saved values of every RunConfig field, for comparison with the flags; a field the
    command line did not set when the work started counts as unset."""
    return {name: base.get(name, _NOT_SAVED) for name in RunConfig.model_fields}


def _same(given: Any, saved: Any) -> bool:
    if isinstance(given, Path) or isinstance(saved, Path):
        return saved is not None and saved is not _NOT_SAVED and Path(str(given)).resolve() == Path(str(saved)).resolve()
    if isinstance(given, (int, float)) and isinstance(saved, (int, float)) and not isinstance(given, bool):
        return float(given) == float(saved)
    if isinstance(given, str) and isinstance(saved, str):
        # A URI is saved with its credentials masked (common/secrets.py): given again whole, it is the same.
        return mask_uri(given) == saved or given == saved
    return given == saved


def refuse_changes(ctx: typer.Context, given: dict[str, Any], saved: dict[str, Any], *, what: str, name: str,
                   options_file: Path) -> None:
    """Raise a one-line error for the first given parameter in ``saved`` whose value differs."""
    flags = {param.name: param.opts[0] for param in ctx.command.params if param.opts}
    for parameter, value in given.items():
        if parameter not in saved or _same(value, saved[parameter]):
            continue
        flag = flags.get(parameter, "--" + parameter.replace("_", "-"))
        before = saved[parameter]
        started = ("it was started without it" if before is _NOT_SAVED or before is None
                   else f"it was started with {flag} {_shown(before)}")
        raise fail(
            f"{flag}: --resume continues the {what} {name} as it was started ({started}; saved in {options_file}); "
            f"drop {flag}, or start a new {what} under another --name"
        )


def _shown(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(part) for part in value)
    return str(value)
