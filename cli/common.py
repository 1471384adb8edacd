"""Shared CLI plumbing: turning library errors into one-line messages and a clean exit."""

from __future__ import annotations

import contextlib
from typing import Iterator

import typer


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Library errors about user input (all ValueError subclasses with one-line messages)
    become ``error: ...`` on stderr and exit status 2, without a traceback."""
    try:
        yield
    except (ValueError, FileNotFoundError) as error:
        typer.secho(f"error: {error}", err=True, fg=typer.colors.RED)
        raise typer.Exit(code=2) from None
