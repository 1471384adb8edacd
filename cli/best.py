"""`metaxl-tune best`: rank a search's trials from MLflow and export the winner's config."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from metaxl_tune.common.names import check_name
from metaxl_tune.common.origins import tracking_uri_named
from metaxl_tune.common.paths import default_storage

from .common import check_output_file, check_positive, user_errors

EXAMPLES = """
Examples:

  metaxl-tune best --name ner-tk-20261124-101500 --top 5 -o best.yaml

  metaxl-tune train --config best.yaml
"""


def best(
    name: str = typer.Option(..., "--name", help="Search name."),
    top: int = typer.Option(5, "--top", help="How many configs to list."),
    metric: str = typer.Option("best_dev_f1", "--metric", help="Ranking metric (best_dev_f1 = dev F1 at the best epoch)."),
    fmt: str = typer.Option("yaml", "--format", help="Export format: yaml or json."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the incumbent config here (the top row; its header records the seeds and the mean)."),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///metaxl-runs/mlflow.db)."),
    rerun: bool = typer.Option(False, "--rerun", help="Re-run the top K configs with --seeds seeds and report mean ± std and the optimism gap."),
    seeds: int = typer.Option(3, "--seeds", help="Seeds per config for --rerun (seed = 1..N)."),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster for --rerun (default: a local Ray)."),
    storage: Optional[str] = typer.Option(None, "--storage", help="Tune storage path for --rerun (default: $METAXL_TUNE_RUNS/metaxl-searches, else metaxl-runs/metaxl-searches)."),
    gpus_per_trial: Optional[float] = typer.Option(None, "--gpus-per-trial", help="GPUs per re-run (default: 1 if the cluster has GPUs)."),
    cpus_per_trial: float = typer.Option(1.0, "--cpus-per-trial", help="CPU cores per re-run."),
    wide: bool = typer.Option(False, "--wide", help="Show every column, however wide the table gets."),
    compare: bool = typer.Option(False, "--compare", help="Train target-only, JT and the incumbent over --seeds seeds and print mean ± std, Δ vs JT, the optimism gap."),
    force: bool = typer.Option(False, "--force", help="Replace an existing --output file (never one in a run, search or ablation folder)."),
) -> None:
    """List a search's best configs (mean ± standard error over seeds) and export the incumbent as a config that `train --config` trains."""
    from metaxl_tune.results.report_data import collect
    from metaxl_tune.search.faults.ending import check_some_trial_finished
    from metaxl_tune.results.config_ranking import export_origin, ranked_configs
    from metaxl_tune.results.config_view import best_table
    from metaxl_tune.results.ranking import export_config, trial_config
    from metaxl_tune.results.tracking import Tracker, check_tracking_uri, default_tracking_uri

    storage = storage or default_storage()
    with user_errors():
        check_name(name)
        if fmt not in ("yaml", "json"):
            raise ValueError(f"--format {fmt}: use yaml or json")
        check_positive(top, "--top")
        check_positive(seeds, "--seeds")
        check_positive(cpus_per_trial, "--cpus-per-trial")
        check_positive(gpus_per_trial, "--gpus-per-trial", allow_zero=True)
        if rerun and compare:
            raise ValueError("--rerun and --compare exclude each other: each trains its own runs; "
                             "run `best --rerun` and `best --compare` one after the other")
        if output is not None:
            check_export_path(output, force=force)
        uri = tracking_uri or default_tracking_uri()
        check_tracking_uri(uri, named=tracking_uri_named(tracking_uri))
        tracker = Tracker(uri, name)
        check_some_trial_finished(tracker)
        ranked = ranked_configs(tracker, metric)
        typer.echo(_wrapped(f"{name}: top {min(top, len(ranked.rows))} of {len(ranked.rows)} configs by mean "
                            f"{metric} over seeds ({_trials_line(ranked.outcomes)})"))
        typer.echo(best_table(ranked, top, wide=wide), nl=False)
        typer.echo(collect(tracker, metric=metric).cost.line())
        incumbent = ranked.incumbent
        # The file trains one seed: the config's first (repeat 0 under paired seeds).
        exported = incumbent.runs[0]
        config = trial_config(tracker, exported.run_id)
        text = export_config(config, output, fmt, origin=export_origin(ranked, incumbent, exported))
    if output is None:
        typer.echo(text, nl=False)
    else:
        typer.echo(_wrapped(f"wrote {output} (config {incumbent.config_id}, {metric} {incumbent.score_text()} over "
                            f"{incumbent.seeds} seed{'s' * (incumbent.seeds > 1)}); reproduce with: "
                            f"metaxl-tune train --config {output}"))
    from metaxl_tune.search.driver.generated_study import AblationInterrupted
    from metaxl_tune.common.stop_signals import exit_status

    try:
        if compare:
            with user_errors():
                _compare(tracker, ranked, seeds, uri, address, storage, gpus_per_trial, cpus_per_trial)
        if rerun:
            with user_errors():
                _rerun(tracker, ranked, top, seeds, uri, address, storage, gpus_per_trial, cpus_per_trial)
    except AblationInterrupted as stop:
        typer.echo("\n" + stop.line)
        raise typer.Exit(code=exit_status()) from None


def check_export_path(output: Path, *, force: bool) -> None:
    """Where ``-o`` may write: never into a run folder (its config.yaml must keep matching its
    weights: `train --resume` reads it) nor among a search's or ablation's state, and an
    existing file only with --force."""
    from metaxl_tune.common.folders import driver_folder_of
    from metaxl_tune.train.run_folder import holds_run

    check_output_file(output, "--output")
    folder = output.absolute().parent
    if folder.is_dir() and holds_run(folder):
        raise ValueError(f"--output {output}: {folder} is a run folder ({', '.join(holds_run(folder))}); "
                         "its config must keep matching its weights: write the config elsewhere")
    held = driver_folder_of(folder)
    if held is not None:
        raise ValueError(f"--output {output}: {held[0]} is {held[1]}; write the config elsewhere")
    if output.exists() and not force:
        raise ValueError(f"--output {output}: the file exists; pass --force to replace it, or choose another path")


def _trials_line(outcomes: dict[str, int]) -> str:
    """``5 completed trials; 2 pruned, 1 failed are no seeds``."""
    completed = outcomes.get("completed", 0)
    others = ", ".join(f"{count} {outcome}" for outcome, count in sorted(outcomes.items()) if outcome != "completed")
    line = f"{completed} completed trial{'s' * (completed != 1)}"
    return f"{line}; {others} {'is' if sum(outcomes.values()) - completed == 1 else 'are'} no seeds" if others else line


def _wrapped(line: str) -> str:
    import textwrap

    from metaxl_tune.common.terminal import terminal_width

    return textwrap.fill(line, width=terminal_width(), subsequent_indent="  ", break_long_words=False,
                         break_on_hyphens=False)


def _gap_lines(ranked, row, scores_of) -> None:
    """The optimism gap of the ranking metric (and test F1) for ``row``; ``scores_of(metric)``:
    the re-run's scores of the config by seed."""
    from metaxl_tune.results.optimism import MEANING, optimism_gap

    for line in [MEANING, *(gap.line() for metric in dict.fromkeys((ranked.metric, "best_test_f1"))
                            if (gap := optimism_gap(row, metric, scores_of(metric))) is not None)]:
        typer.echo(_wrapped(line))


def _compare(tracker, ranked, seeds, uri, address, storage, gpus_per_trial, cpus_per_trial) -> None:
    from metaxl_tune.results.optimism import rerun_scores
    from metaxl_tune.results.tracking import Tracker
    from metaxl_tune.search.driver.compare import run_comparison

    incumbent = ranked.incumbent
    name, table = run_comparison(tracker, incumbent.runs[0].run_id, seeds=seeds, uri=uri, storage=storage,
                                 address=address, gpus_per_trial=gpus_per_trial, cpus_per_trial=cpus_per_trial,
                                 log=typer.echo)
    typer.echo(f"\n{tracker.search_name}: the winner against the baselines (comparison {name})")
    typer.echo(table, nl=False)
    compared = Tracker(uri, name)
    _gap_lines(ranked, incumbent, lambda metric: rerun_scores(compared, metric).get("metaxl", {}))
    typer.echo(f"see them in MLflow: metaxl-tune ui --name {tracker.search_name}")
    typer.echo(f"                    metaxl-tune ui --name {name}")


def _rerun(tracker, ranked, top, seeds, uri, address, storage, gpus_per_trial, cpus_per_trial) -> None:
    """The top configs as rows of an ablation over seeds (rows named by config id); prints mean ±
    std per config, then each config's optimism gap."""
    import time

    from metaxl_tune.common.names import derived_name
    from metaxl_tune.results.optimism import MEANING, gap_table, optimism_gap, rerun_scores
    from metaxl_tune.results.report import to_markdown
    from metaxl_tune.results.report_data import collect
    from metaxl_tune.results.ranking import trial_config
    from metaxl_tune.search.driver.ablate import AblationOptions, rerun_study
    from metaxl_tune.search.driver.generated_study import run_generated_ablation
    from metaxl_tune.results.tracking import Tracker

    rows = ranked.rows[:top]
    configs = {row.config_id: trial_config(tracker, row.runs[0].run_id) for row in rows}
    first = next(iter(configs.values()))
    name = derived_name(tracker.search_name, f"-rerun-{time.strftime('%Y%m%d-%H%M%S')}")
    study = rerun_study(configs, Path(storage) / f"{name}.study.yaml",
                        origin=f"top {len(configs)} configs of search {tracker.search_name}")
    options = AblationOptions(
        name=name, study=str(study), targets=[first.target], seeds=seeds, base={"task": first.task},
        address=address, storage=storage, tracking_uri=uri, gpus_per_trial=gpus_per_trial, cpus_per_trial=cpus_per_trial,
    )
    outcome = run_generated_ablation(options, study, what="re-run", log=typer.echo)
    rerun_tracker = Tracker(uri, name)
    for metric in ("best_dev_f1", "best_test_f1"):
        typer.echo(to_markdown(collect(rerun_tracker, metric=metric)))
    typer.echo(f"re-run {name}: {outcome['completed']} of {outcome['runs']} runs completed")
    scores = rerun_scores(rerun_tracker, ranked.metric)
    gaps = [gap for row in rows if (gap := optimism_gap(row, ranked.metric, scores.get(row.config_id, {}))) is not None]
    if gaps:
        typer.echo("\n" + _wrapped(f"{MEANING}. Of {ranked.metric}:"))
        typer.echo(gap_table(gaps), nl=False)


best.__doc__ = (best.__doc__ or "") + "\n" + EXAMPLES
