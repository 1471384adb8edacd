"""`metaxl-tune best`: rank a search's trials from MLflow and export the winner's config."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from metaxl_tune.names import check_name
from metaxl_tune.origins import tracking_uri_named
from metaxl_tune.paths import default_storage

from .common import check_output_file, check_positive, user_errors

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
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///metaxl-runs/mlflow.db)."),
    rerun: bool = typer.Option(False, "--rerun", help="Re-run the top K configs with --seeds seeds and report mean ± std."),
    seeds: int = typer.Option(3, "--seeds", help="Seeds per config for --rerun (seed = 1..N)."),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster for --rerun (default: a local Ray)."),
    storage: Optional[str] = typer.Option(None, "--storage", help="Tune storage path for --rerun (default: $METAXL_TUNE_RUNS/metaxl-searches, else metaxl-runs/metaxl-searches)."),
    gpus_per_trial: Optional[float] = typer.Option(None, "--gpus-per-trial", help="GPUs per re-run (default: 1 if the cluster has GPUs)."),
    cpus_per_trial: float = typer.Option(1.0, "--cpus-per-trial", help="CPU cores per re-run."),
    wide: bool = typer.Option(False, "--wide", help="Show every column, however wide the table gets."),
    compare: bool = typer.Option(False, "--compare", help="Train target-only, JT and the winner over --seeds seeds and print mean ± std, Δ vs JT."),
) -> None:
    """List a search's best trials and export the winner as a config that `train --config` reproduces."""
    from metaxl_tune.report import collect
    from metaxl_tune.search.ending import check_some_trial_finished
    from metaxl_tune.results import best_table, export_config, ranked_trials, searched_parameters, trial_config
    from metaxl_tune.tracking import Tracker, check_tracking_uri, default_tracking_uri

    storage = storage or default_storage()
    with user_errors():
        check_name(name)
        if fmt not in ("yaml", "json"):
            raise ValueError(f"--format {fmt}: use yaml or json")
        check_positive(top, "--top")
        check_positive(seeds, "--seeds")
        check_positive(cpus_per_trial, "--cpus-per-trial")
        check_positive(gpus_per_trial, "--gpus-per-trial", allow_zero=True)
        if output is not None:
            check_output_file(output, "--output")
        uri = tracking_uri or default_tracking_uri()
        check_tracking_uri(uri, named=tracking_uri_named(tracking_uri))
        tracker = Tracker(uri, name)
        check_some_trial_finished(tracker)
        rows = ranked_trials(tracker, metric)
        searched = searched_parameters(tracker)
        typer.echo(f"{name}: top {min(top, len(rows))} of {len(rows)} trials by {metric}")
        typer.echo(best_table(rows[:top], metric, searched, wide=wide), nl=False)
        typer.echo(collect(tracker, metric=metric).cost.line())
        winner = rows[0]
        config = trial_config(tracker, winner.run_id)
        origin = f"best trial {winner.trial_id} of search {name} ({metric} = {winner.value:.2f}, MLflow run {winner.run_id})"
        text = export_config(config, output, fmt, origin=origin)
    if output is None:
        typer.echo(text, nl=False)
    else:
        typer.echo(f"wrote {output}; reproduce with: metaxl-tune train --config {output}")
    from metaxl_tune.search.generated_study import AblationInterrupted
    from metaxl_tune.search.interrupt import EXIT_CODE

    try:
        if compare:
            with user_errors():
                _compare(tracker, winner.run_id, seeds, uri, address, storage, gpus_per_trial, cpus_per_trial)
        if rerun:
            with user_errors():
                _rerun(tracker, rows[:top], seeds, uri, address, storage, gpus_per_trial, cpus_per_trial)
    except AblationInterrupted as stop:
        typer.echo("\n" + stop.line)
        raise typer.Exit(code=EXIT_CODE) from None


def _compare(tracker, run_id, seeds, uri, address, storage, gpus_per_trial, cpus_per_trial) -> None:
    from metaxl_tune.compare import run_comparison

    name, table = run_comparison(tracker, run_id, seeds=seeds, uri=uri, storage=storage, address=address,
                                 gpus_per_trial=gpus_per_trial, cpus_per_trial=cpus_per_trial, log=typer.echo)
    typer.echo(f"\n{tracker.search_name}: the winner against the baselines (comparison {name})")
    typer.echo(table, nl=False)
    typer.echo(f"see them in MLflow: metaxl-tune ui --name {tracker.search_name}")
    typer.echo(f"                    metaxl-tune ui --name {name}")


def _rerun(tracker, rows, seeds, uri, address, storage, gpus_per_trial, cpus_per_trial) -> None:
    """The top configs as rows of an ablation over seeds; prints mean ± std per config."""
    import time

    from metaxl_tune.names import derived_name
    from metaxl_tune.report import collect, to_markdown
    from metaxl_tune.results import trial_config
    from metaxl_tune.search.ablate import AblationOptions, rerun_study
    from metaxl_tune.search.generated_study import run_generated_ablation
    from metaxl_tune.tracking import Tracker

    configs = {row.trial_id: trial_config(tracker, row.run_id) for row in rows}
    first = next(iter(configs.values()))
    name = derived_name(tracker.search_name, f"-rerun-{time.strftime('%Y%m%d-%H%M%S')}")
    study = rerun_study(configs, Path(storage) / f"{name}.study.yaml",
                        origin=f"top {len(configs)} trials of search {tracker.search_name}")
    options = AblationOptions(
        name=name, study=str(study), targets=[first.target], seeds=seeds, base={"task": first.task},
        address=address, storage=storage, tracking_uri=uri, gpus_per_trial=gpus_per_trial, cpus_per_trial=cpus_per_trial,
    )
    outcome = run_generated_ablation(options, study, what="re-run", log=typer.echo)
    rerun_tracker = Tracker(uri, name)
    for metric in ("best_dev_f1", "best_test_f1"):
        typer.echo(to_markdown(collect(rerun_tracker, metric=metric)))
    typer.echo(f"re-run {name}: {outcome['completed']} of {outcome['runs']} runs completed")


best.__doc__ = (best.__doc__ or "") + "\n" + EXAMPLES
