"""The `metaxl-tune` command: one thin command per verb, each calling one library function."""

from __future__ import annotations

import os
import sys

import typer

from .ablate import ablate
from .analyze import analyze
from .best import best
from .common import ErrorReportingGroup
from .report import report
from .search import search
from .sync import sync
from .train import train
from .ui import ui

app = typer.Typer(
    name="metaxl-tune",
    help="Hyperparameter search and ablations for MetaXL cross-lingual meta-learning.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # One error policy for every command: user errors in one line (exit 2), a bug line first
    # before any other traceback (cli/common.py).
    cls=ErrorReportingGroup,
)


@app.callback()
def root() -> None:
    """Hyperparameter search and ablations for MetaXL cross-lingual meta-learning."""
    # Library progress bars (dataset saving, model shards, artifact downloads) would bury
    # the command's own output; the commands show their own progress.
    for variable in ("HF_DATASETS_DISABLE_PROGRESS_BARS", "HF_HUB_DISABLE_PROGRESS_BARS"):
        os.environ.setdefault(variable, "1")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # The variables are read when `datasets` is imported: where it already is (the command run
    # in a process that imported it, as a test's or a notebook's), switch its bars off directly.
    if "datasets" in sys.modules:
        sys.modules["datasets"].disable_progress_bars()


app.command(help=train.__doc__)(train)
app.command(help=search.__doc__)(search)
app.command(help=best.__doc__)(best)
app.command(help=ui.__doc__)(ui)
app.command(help=ablate.__doc__)(ablate)
app.command(help=report.__doc__)(report)
app.command(help=analyze.__doc__)(analyze)
app.command(help=sync.__doc__)(sync)


def main() -> None:
    from metaxl_tune.common.secrets import mask_standard_streams

    # Whatever this process prints (its own lines, a library's warning, a traceback) shows no
    # password or token of a URI (common/secrets.py).
    mask_standard_streams()
    try:
        app()
    except SystemExit as ending:
        # Ctrl-C (or SIGTERM, SIGHUP) answered during data preparation's native work
        # (metaxl_tune/common/interruptible.py): nothing is left to save, so the process ends
        # now rather than after finalization.
        from metaxl_tune.common.stop_signals import INTERRUPTED_STATUSES

        if ending.code in INTERRUPTED_STATUSES:
            from metaxl_tune.common.interruptible import exit_at_once_if_interrupted

            exit_at_once_if_interrupted(ending.code)
        raise
