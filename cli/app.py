"""The `metaxl-tune` command: one thin command per verb, each calling one library function."""

from __future__ import annotations

import typer

from .search import search
from .train import train

app = typer.Typer(
    name="metaxl-tune",
    help="Hyperparameter search and ablations for MetaXL cross-lingual meta-learning.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def root() -> None:
    """Hyperparameter search and ablations for MetaXL cross-lingual meta-learning."""


app.command(help=train.__doc__)(train)
app.command(help=search.__doc__)(search)


def main() -> None:
    app()
