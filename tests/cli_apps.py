"""A throwaway Typer app around one command function, for tests that invoke it through Typer's runner."""

from __future__ import annotations

from typing import Any, Callable

import typer


def one_command_app(command: Callable[..., Any], **settings: Any) -> typer.Typer:
    """An app holding ``command`` (registered with ``settings``, e.g. help=). Its callback keeps the
    command a subcommand, as in the real app: without one, Typer runs a lone command at the top."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.callback()(_root)
    app.command(**settings)(command)
    return app


def _root() -> None:
    """A stand-in for the metaxl-tune app."""
