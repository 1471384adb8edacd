"""`metaxl-tune report`: a paper-style table (settings × targets, mean ± std over seeds) of a search."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from metaxl_tune.common.names import check_name
from metaxl_tune.common.origins import tracking_uri_named

from .common import check_output_file, user_errors

EXAMPLES = """
Examples:

  metaxl-tune report --name methods-tk --format md

  metaxl-tune report --name placement --format latex -o table5.tex   # also writes table5.png
"""


def report(
    name: str = typer.Option(..., "--name", help="Search or ablation name."),
    fmt: str = typer.Option("md", "--format", help="Table format: md, latex or csv."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the table here (default: print it)."),
    metric: str = typer.Option("best_test_f1", "--metric", help="Cell metric (best_test_f1 = test F1 at the best-dev epoch, as in the paper)."),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///metaxl-runs/mlflow.db)."),
    plot_path: Optional[Path] = typer.Option(None, "--plot", help="Bar chart PNG (default: next to -o, else report-NAME.png)."),
) -> None:
    """Tabulate a search's completed trials per setting and target (mean ± std over seeds, avg, Δ vs jt),
    plot them, and attach table and plot to the search's MLflow run under report/."""
    from metaxl_tune.results.report import make_report
    from metaxl_tune.search.faults.interrupt import EXIT_CODE
    from metaxl_tune.results.tracking import Tracker, check_tracking_uri, default_tracking_uri

    with user_errors():
        check_name(name)
        for path, flag in ((output, "--output"), (plot_path, "--plot")):
            if path is not None:
                check_output_file(path, flag)
        uri = tracking_uri or default_tracking_uri()
        check_tracking_uri(uri, named=tracking_uri_named(tracking_uri))
        try:
            result = make_report(Tracker(uri, name), fmt, metric=metric, output=output, plot_path=plot_path)
        except KeyboardInterrupt:
            # The report only reads the search, and writes its files whole (results/report.py) or not at all.
            typer.echo(f"\ninterrupted; the runs of {name} are unchanged and no partial file was left; "
                       "run the same command again for the report", err=True)
            raise typer.Exit(code=EXIT_CODE) from None
    # The table alone goes to stdout (pipeable csv); what happened goes to stderr.
    if output is None:
        typer.echo(result.text, nl=False)
    else:
        typer.echo(f"wrote {output}", err=True)
    typer.echo(f"wrote {result.plot_path}", err=True)
    if result.attached:
        typer.echo(f"attached {', '.join(result.attached)} to MLflow run {result.data.parent_run_id}", err=True)
    typer.echo(result.cost.line(), err=True)


report.__doc__ = (report.__doc__ or "") + "\n" + EXAMPLES
