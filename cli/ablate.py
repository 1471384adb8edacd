"""`metaxl-tune ablate`: the paper's ablations (or your own study) for your targets and seeds."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from metaxl_tune.names import check_name
from metaxl_tune.origins import storage_named
from metaxl_tune.paths import default_storage

from .common import check_cache_dir, check_output_dir, check_positive, user_errors
from .options import pop_config_overrides, with_config_options
from .resume_flags import given_values, refuse_changes, saved_config_fields

EXAMPLES = """
Examples:

  metaxl-tune ablate --study methods --task ner --targets qu,cdo,ilo --seeds 3 --dry-run

  metaxl-tune ablate --study placement --task ner --targets tk --seeds 2 --preset demo

  metaxl-tune ablate --name methods-ner-20261124-101500 --resume
"""


def _print_dry_run(the_plan) -> None:
    from metaxl_tune.search.study import SECONDS_PER_JT_STEP

    table = Table(title=f"study {the_plan.study.name}: {the_plan.study.description}")
    for column in ("setting", "fields", "targets", "seeds", "runs", "est. device-hours"):
        table.add_column(column)
    hours = the_plan.estimated_hours()
    options = the_plan.options
    for label, values in the_plan.study.settings.items():
        shown = ", ".join(f"{key}={value}" for key, value in values.items())
        runs = sum(1 for cell in the_plan.cells if cell.setting == label)
        table.add_row(label, shown, ",".join(options.targets), str(options.seeds), str(runs), f"{hours[label]:.2f}")
    Console().print(table)
    per_step = SECONDS_PER_JT_STEP.get(the_plan.base.model, SECONDS_PER_JT_STEP["default"])
    typer.echo(
        f"{len(the_plan.cells)} runs, about {sum(hours.values()):.2f} device-hours "
        f"(estimate: {per_step} s per JT step of {the_plan.base.model}, other methods scaled by bench/step.py ratios)"
    )


def _saved_ablation_flags(options) -> dict[str, Any]:
    """The saved value each flag that defines an ablation would change on --resume."""
    return {
        "study": options.study, "targets": ",".join(options.targets), "seeds": options.seeds, "preset": options.preset,
        "max_concurrent": options.max_concurrent, "gpus_per_trial": options.gpus_per_trial,
        "cpus_per_trial": options.cpus_per_trial, "address": options.address, "tracking_uri": options.tracking_uri,
        "cache_dir": options.cache_dir, **saved_config_fields(options.base),
    }


@with_config_options
def ablate(
    ctx: typer.Context,
    study: str = typer.Option("methods", "--study", help="Study: methods, placement, jt-rtn, source-size, source-language, paper, or a YAML path."),
    targets: Optional[str] = typer.Option(None, "--targets", help="Comma-separated target languages, e.g. qu,cdo,tk."),
    seeds: int = typer.Option(1, "--seeds", help="Seeds per setting and target (seed = 1..N)."),
    preset: Optional[str] = typer.Option(None, "--preset", help="demo = tiny model + synthetic data, small and fast."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the grid, the number of runs and estimated device-hours; run nothing."),
    name: Optional[str] = typer.Option(None, "--name", help="Ablation name (default: <study>-<task>-<time>)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the ablation --name."),
    max_concurrent: Optional[int] = typer.Option(None, "--max-concurrent", help="Most runs at once."),
    gpus_per_trial: Optional[float] = typer.Option(None, "--gpus-per-trial", help="GPUs per run (default: 1 if the cluster has GPUs)."),
    cpus_per_trial: float = typer.Option(1.0, "--cpus-per-trial", help="CPU cores per run."),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster HOST:PORT or auto (default: a local Ray)."),
    storage: Optional[str] = typer.Option(None, "--storage", help="Tune storage path (default: $METAXL_TUNE_RUNS/metaxl-searches, else metaxl-runs/metaxl-searches)."),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="MLflow tracking URI."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Encoded-data cache."),
    storage_retry_s: Optional[float] = typer.Option(None, "--storage-retry-s", help="Seconds a run waits for unwritable storage before its checkpoint write counts as a failure (default 180)."),
    wait_for_resources: Optional[float] = typer.Option(None, "--wait-for-resources", help="When no node can hold one trial (its CPUs and GPUs on one node): seconds to wait for one, on an autoscaling cluster (default 0: refuse at once, naming the request and the largest node)."),
    **fields: Any,
) -> None:
    """Run a study's grid (settings x targets x seeds) on Ray, tracked in MLflow; then `metaxl-tune report`."""
    import time

    from metaxl_tune.search.ablate import AblationOptions, plan, run_ablation
    from metaxl_tune.search.interrupt import EXIT_CODE, resume_hint, stopped_line
    from metaxl_tune.search.runner import OPTIONS_FILE

    overrides = pop_config_overrides(fields)
    storage_flag = storage_named(storage)
    storage = storage or default_storage()
    with user_errors():
        if name is not None:
            check_name(name)
        for value, flag in ((seeds, "--seeds"), (max_concurrent, "--max-concurrent"), (cpus_per_trial, "--cpus-per-trial")):
            check_positive(value, flag)
        check_positive(gpus_per_trial, "--gpus-per-trial", allow_zero=True)
        check_positive(wait_for_resources, "--wait-for-resources", allow_zero=True)
        if not dry_run:
            check_output_dir(Path(storage), storage_flag)
            check_cache_dir(cache_dir)
        if resume:
            if name is None:
                raise ValueError("--resume needs --name of the ablation to continue")
            from metaxl_tune.search.driver_lock import refuse_while_held

            # A driver in its first seconds has not saved its options yet: name it, not "no ablation".
            refuse_while_held(storage, name, command="ablate")
            options = AblationOptions.load(storage, name)
            refuse_changes(ctx, given_values(ctx, overrides), _saved_ablation_flags(options), what="ablation",
                           name=name, options_file=options.experiment_dir / OPTIONS_FILE)
            if storage_retry_s is not None:
                options.storage_retry_s = storage_retry_s
            if wait_for_resources is not None:
                options.wait_for_resources_s = wait_for_resources
        else:
            if name is None:
                # The study file's name starts the default; it follows the rule too.
                name = check_name(f"{Path(study).stem}-{overrides.get('task', 'ner')}-{time.strftime('%Y%m%d-%H%M%S')}",
                                  f"--name (default from --study {study})")
            options = AblationOptions(
                name=name,
                study=study,
                targets=[t.strip() for t in (targets or overrides.get("target", "")).split(",") if t.strip()],
                seeds=seeds,
                base={key: value for key, value in overrides.items() if key != "target"},
                preset=preset,
                max_concurrent=max_concurrent,
                gpus_per_trial=gpus_per_trial,
                cpus_per_trial=cpus_per_trial,
                address=address,
                storage=storage,
                tracking_uri=tracking_uri,
                cache_dir=str(cache_dir) if cache_dir else None,
                **({} if storage_retry_s is None else {"storage_retry_s": storage_retry_s}),
                **({} if wait_for_resources is None else {"wait_for_resources_s": wait_for_resources}),
            )
        if dry_run:
            _print_dry_run(plan(options))
            return
        try:
            outcome = run_ablation(options, resume=resume, log=typer.echo)
        except KeyboardInterrupt:
            typer.echo("\n" + stopped_line("ablate", options.name, options.storage, OPTIONS_FILE))
            raise typer.Exit(code=EXIT_CODE) from None
    typer.echo(f"ablation {outcome['name']}: {outcome['completed']} of {outcome['runs']} runs completed, {outcome['failed']} failed")
    if outcome["interrupted"]:
        typer.echo(f"ablation {outcome['name']} interrupted ({outcome['interrupted']}); its state is saved. "
                   f"Resume with: {resume_hint('ablate', outcome['name'], str(Path(options.storage).resolve()))}")
        raise typer.Exit(code=EXIT_CODE)
    if outcome["failures"].all_failed:
        typer.echo(f"ablation {outcome['name']}: {outcome['failures'].line('runs')}", err=True)
        raise typer.Exit(code=1)
    if outcome["finished"]:
        typer.echo(f"tables: metaxl-tune report --name {outcome['name']} --format md")
    else:
        typer.echo(f"stopped early; resume with: metaxl-tune ablate --name {outcome['name']} --resume --storage {options.storage}")


ablate.__doc__ = (ablate.__doc__ or "") + "\n" + EXAMPLES
