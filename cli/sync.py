"""`metaxl-tune sync`: backfill MLflow from a search's or ablation's Tune results."""

from __future__ import annotations

from typing import Optional

import typer

from metaxl_tune.common.names import check_name
from metaxl_tune.common.paths import default_storage

from .common import user_errors

EXAMPLES = """
Examples:

  metaxl-tune sync --name ner-tk-20261124-101500

  metaxl-tune sync --name ner-tk-20261124-101500 --storage /shared/searches --tracking-uri http://10.0.0.5:5000
"""


def sync(
    name: str = typer.Option(..., "--name", help="The search or ablation to write to MLflow."),
    storage: Optional[str] = typer.Option(None, "--storage", help="Tune storage path it ran with (default: $METAXL_TUNE_RUNS/metaxl-searches, else metaxl-runs/metaxl-searches)."),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="MLflow tracking URI (default: the one it ran with)."),
) -> None:
    """Write what MLflow lacks of a search from Tune's and Optuna's records: runs, params, epoch results, tags, final statuses, the search's summary, and the files the artifact store did not take (idempotent)."""
    from metaxl_tune.search.driver.sync import sync as sync_experiment

    from metaxl_tune.results.tracking import check_tracking_uri

    storage = storage or default_storage()
    with user_errors():
        check_name(name)
        if tracking_uri is not None:
            check_tracking_uri(tracking_uri)
        report = sync_experiment(storage, name, tracking_uri=tracking_uri, log=typer.echo)
    if report.parent_status is None:
        typer.echo("some trials have not ended yet: run sync again once the search is done (or resume it)")
    if report.files_failed:
        # Said on its own line above (the cause, and to sync again once there is room).
        raise typer.Exit(code=1)


sync.__doc__ = (sync.__doc__ or "") + "\n" + EXAMPLES
