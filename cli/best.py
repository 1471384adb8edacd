"""`metaxl-tune best`: rank a search's trials from MLflow and export the winner's config."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from .common import user_errors

EXAMPLES = """
Examples:

  metaxl-tune best --name ner-tk-20261124-101500 --top 5 -o best.yaml

  metaxl-tune train --config best.yaml
"""


def best(
    name: str = typer.Option(..., "--name", help="Search name."),
    top: int = typer.Option(5, "--top", help="How many trials to list."),
    metric: str = typer.Option("best_dev_f1", "--metric", help="Ranking metric (best_dev_f1 = dev F1 at the best epoch)."),
    fmt: str = typer.Option("yaml", "--format", help="Export format: yaml or json."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the best trial's config here."),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)."),
) -> None:
    """List a search's best trials and export the winner as a config that `train --config` reproduces."""
    from metaxl_tune.results import export_config, format_value, ranked_trials, searched_parameters, trial_config
    from metaxl_tune.tracking import Tracker, check_tracking_uri, default_tracking_uri

    with user_errors():
        uri = tracking_uri or default_tracking_uri()
        check_tracking_uri(uri)
        tracker = Tracker(uri, name)
        rows = ranked_trials(tracker, metric)
        searched = searched_parameters(tracker)
        table = Table(title=f"{name}: top {min(top, len(rows))} of {len(rows)} trials by {metric}")
        for column in ("#", "trial", "outcome", metric, "test F1 @ best dev", *searched):
            table.add_column(column, justify="right" if column not in ("trial", "outcome") else "left")
        for rank, row in enumerate(rows[:top], start=1):
            table.add_row(
                str(rank), row.trial_id, row.outcome, f"{row.value:.2f}",
                format_value(row.metrics.get("best_test_f1", "")),
                *(format_value(row.params.get(key, "")) for key in searched),
            )
        Console().print(table)
        winner = rows[0]
        config = trial_config(tracker, winner.run_id)
        origin = f"best trial {winner.trial_id} of search {name} ({metric} = {winner.value:.2f}, MLflow run {winner.run_id})"
        text = export_config(config, output, fmt, origin=origin)
    if output is None:
        typer.echo(text, nl=False)
    else:
        typer.echo(f"wrote {output}; reproduce with: metaxl-tune train --config {output}")


best.__doc__ = (best.__doc__ or "") + "\n" + EXAMPLES
