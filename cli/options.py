"""Command-line options generated from RunConfig's fields, so every field has a flag.

Each option defaults to None ("not given"): given flags override the fields of --config,
and the rest keep the config file's values or the defaults.
"""

from __future__ import annotations

import inspect
import typing
from typing import Any, Callable

import typer

from metaxl_tune.config import RunConfig

_NULLABLE_FLOATS = {"lookahead_lr", "max_grad_norm"}


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def _choices(annotation: Any) -> list[str]:
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Literal:
        return [str(arg) for arg in args]
    return [choice for arg in args for choice in _choices(arg)]


def _option_type(name: str, annotation: Any) -> Any:
    if name == "rtn_layers" or name in _NULLABLE_FLOATS:
        return str | None
    base = [arg for arg in typing.get_args(annotation) if arg is not type(None)] or [annotation]
    if base[0] in (bool, int, float):
        return base[0] | None
    return str | None


def _parse(name: str, value: Any) -> Any:
    if name == "rtn_layers":
        return [int(part) if part.strip().isdigit() else part.strip() for part in value.split(",")]
    if name in _NULLABLE_FLOATS:
        if not value.isascii():  # float() reads any Unicode digit; flags take ASCII (cli/common.py)
            raise ValueError(value)
        return None if value.lower() in {"none", "null", "off"} else float(value)
    return value


def config_parameters() -> list[inspect.Parameter]:
    """One keyword-only Typer option per RunConfig field, with the field's docstring as help."""
    parameters = []
    for name, field in RunConfig.model_fields.items():
        option_type = _option_type(name, field.annotation)
        help_text = field.description or ""
        choices = _choices(field.annotation)
        if choices and name != "rtn_layers":
            help_text += f" [{'|'.join(choices)}]"
        if name == "rtn_layers":
            help_text += " Comma-separated, e.g. 0,last."
        declaration = (
            f"{flag_name(name)}/--no-{name.replace('_', '-')}" if option_type == bool | None else flag_name(name)
        )
        default = typer.Option(None, declaration, help=help_text, rich_help_panel="Run config", show_default=False)
        parameters.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=option_type))
    return parameters


def pop_config_overrides(values: dict[str, Any]) -> dict[str, Any]:
    """Remove the config fields from a command's keyword arguments; return those given."""
    overrides = {}
    for name in RunConfig.model_fields:
        value = values.pop(name, None)
        if value is not None:
            try:
                overrides[name] = _parse(name, value)
            except ValueError:
                raise typer.BadParameter(f"cannot parse {value!r}", param_hint=flag_name(name)) from None
    return overrides


def with_config_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Extend ``command``'s signature with the config options (it receives them in **kwargs)."""
    own = [p for p in inspect.signature(command).parameters.values() if p.kind != inspect.Parameter.VAR_KEYWORD]
    command.__signature__ = inspect.Signature(own + config_parameters())  # type: ignore[attr-defined]
    return command
