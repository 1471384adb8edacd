"""`metaxl-tune analyze`: representation analysis (paper section 4.5) of a search trial."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from metaxl_tune.common.names import check_name
from metaxl_tune.common.origins import tracking_uri_named
from metaxl_tune.common.secrets import mask_uri

from .common import check_output_dir, check_positive, user_errors

EXAMPLES = """
Examples:

  metaxl-tune ui   (a trial's run id is on its MLflow page)

  metaxl-tune analyze --run 3f2a9c0d41e84b6f9a1d2c3b4e5f6a7b --limit 1000

  metaxl-tune analyze --run 3f2a9c0d41e84b6f9a1d2c3b4e5f6a7b --tracking-uri http://10.0.0.5:5000 --device cpu
"""


def analyze(
    run: str = typer.Option(..., "--run", help="MLflow run id of a trial (it holds config.yaml and checkpoint/)."),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///metaxl-runs/mlflow.db)."),
    limit: int = typer.Option(2000, "--limit", help="Most representations per set (the first ones: tokens for NER, sentences for SA)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Where to write pca.png and analysis.json (default: analysis/<run id>)."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Encoded-data cache (default: $METAXL_TUNE_CACHE or ~/.cache/metaxl-tune)."),
    device: str = typer.Option("auto", "--device", help="Device for the forwards: auto, cpu, cuda or cuda:N (overrides the trial's)."),
) -> None:
    """Hausdorff distances of a trial's target and source representations, without and with the RTN, a PCA plot, all logged to its MLflow run."""
    from rich.console import Console
    from rich.table import Table

    from metaxl_tune.results.analysis import ARTIFACT_DIR, PLOT_FILE
    from metaxl_tune.results.analysis_record import analyze_mlflow_run
    from metaxl_tune.results.tracking import check_tracking_uri, default_tracking_uri

    with user_errors():
        check_name(run, "--run")  # a run id; it also names the default output folder
        check_positive(limit, "--limit")
        uri = tracking_uri or default_tracking_uri()
        check_tracking_uri(uri, named=tracking_uri_named(tracking_uri))
        directory = output or Path("analysis") / run
        check_output_dir(directory, "--output")
        result = analyze_mlflow_run(uri, run, cache_dir=cache_dir, output_dir=directory, limit=limit, device=device)
    unit = "tokens" if result.task == "ner" else "sentences"
    table = Table(
        title=f"{result.task} {result.source_language}->{result.target} ({result.method}): "
        f"{result.n_target} target / {result.n_source} source {unit}"
    )
    for column in ("source set", "Hausdorff", "h(source, target)", "h(target, source)"):
        table.add_column(column, justify="left" if column == "source set" else "right")
    table.add_row("without RTN", *(f"{value:.4g}" for value in (
        result.hausdorff_source_target, result.directed_source_to_target, result.directed_target_to_source)))
    headline = "with RTN" if result.rtn_placement is None else f"with RTN at {result.rtn_placement} (top)"
    table.add_row(headline, *(f"{value:.4g}" for value in (
        result.hausdorff_rtn_source_target, result.directed_rtn_source_to_target, result.directed_target_to_rtn_source)))
    for placement, values in result.rtn_by_placement.items():
        if placement != str(result.rtn_placement):
            table.add_row(f"with RTN at {placement}", *(f"{value:.4g}" for value in values))
    Console().print(table)
    if result.mixture_weights:
        weights = "  ".join(f"{key.removeprefix('rtn_mix_')}: {value:.3f}" for key, value in result.mixture_weights.items())
        typer.echo(f"RTN mixture weights (placement: softmax weight): {weights}")
    typer.echo(f"PCA plot: {result.plot}")
    typer.echo(f"logged metrics and {ARTIFACT_DIR}/{PLOT_FILE} to MLflow run {run} at {mask_uri(uri)}")


analyze.__doc__ = (analyze.__doc__ or "") + "\n" + EXAMPLES
