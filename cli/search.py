"""`metaxl-tune search`: Optuna + Ray Tune + MLflow over a YAML search space."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path
from typing import Any, Optional

import typer

from metaxl_tune.names import check_name
from metaxl_tune.origins import storage_named
from metaxl_tune.paths import default_storage

from .common import check_cache_dir, check_output_dir, check_positive, user_errors
from .options import pop_config_overrides, with_config_options
from .resume_flags import given_values, refuse_changes, saved_config_fields

EXAMPLES = """
Examples:

  metaxl-tune search --task ner --target tk --preset demo --num-samples 6

  metaxl-tune search --task ner --target qu --space ner --num-samples 40 --address 10.0.0.5:6379 --storage /shared/searches

  metaxl-tune search --name ner-qu-20261124-101500 --resume
"""


def _saved_search_flags(options) -> dict[str, Any]:
    """The saved value each flag that defines a search would change on --resume (the cluster,
    the tracking server and the storage wait may change: where it runs, not what it is)."""
    return {
        "space": options.space, "preset": options.preset, "num_samples": options.num_samples,
        "max_concurrent": options.max_concurrent, "time_budget": options.time_budget_s,
        "scheduler": options.scheduler, "grace_period": options.grace_period,
        "gpus_per_trial": options.gpus_per_trial, "cpus_per_trial": options.cpus_per_trial,
        "search_seed": options.seed, "cache_dir": options.cache_dir, "keep_checkpoints": options.keep_checkpoints,
        "sampler": options.sampler, "warm_start": ",".join(options.warm_start) or None,
        "warm_start_top": options.warm_start_top,
        **saved_config_fields(options.base),
    }


@with_config_options
def search(
    ctx: typer.Context,
    space: str = typer.Option("ner", "--space", help="Search space: a shipped name (ner, sa, paper-grid, demo) or a YAML path."),
    preset: Optional[str] = typer.Option(None, "--preset", help="demo = tiny model + synthetic data + demo space (offline, minutes on 2 CPUs)."),
    name: Optional[str] = typer.Option(None, "--name", help="Search name (default: <task>-<target>-<time>)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the search --name from its saved state."),
    num_samples: int = typer.Option(10, "--num-samples", help="Total number of trials."),
    max_concurrent: Optional[int] = typer.Option(None, "--max-concurrent", help="Most trials at once (default: as many as resources allow)."),
    time_budget: Optional[float] = typer.Option(None, "--time-budget", help="Stop starting trials after this many seconds."),
    scheduler: str = typer.Option("asha", "--scheduler", help="asha (prune weak trials by epoch) or fifo."),
    sampler: str = typer.Option("tpe", "--sampler", help="Optuna sampler: tpe, random, gp, cmaes, qmc or grid (all-categorical spaces such as paper-grid)."),
    warm_start: Optional[str] = typer.Option(None, "--warm-start", help="Earlier searches (NAME[,NAME...], same --storage) whose finished and pruned trials seed this one."),
    warm_start_top: int = typer.Option(0, "--warm-start-top", help="Run the K best configs of the --warm-start searches first."),
    grace_period: int = typer.Option(1, "--grace-period", help="Epochs every trial gets before ASHA may prune it."),
    gpus_per_trial: Optional[float] = typer.Option(None, "--gpus-per-trial", help="GPUs per trial (default: 1 if the cluster has GPUs, else 0; 0.5 packs two)."),
    cpus_per_trial: float = typer.Option(1.0, "--cpus-per-trial", help="CPU cores per trial."),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster: HOST:PORT or auto (default: $RAY_ADDRESS, else a local Ray)."),
    storage: Optional[str] = typer.Option(None, "--storage", help="Tune storage path, shared by every node of a multi-node search (default: $METAXL_TUNE_RUNS/metaxl-searches, else metaxl-runs/metaxl-searches)."),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///metaxl-runs/mlflow.db)."),
    search_seed: int = typer.Option(0, "--search-seed", help="Seed of Optuna's sampler."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Encoded-data cache shared by the trials."),
    keep_checkpoints: int = typer.Option(1, "--keep-checkpoints", help="Newest resume checkpoints kept per trial (with 2, a damaged one falls back to the one before)."),
    storage_retry_s: Optional[float] = typer.Option(None, "--storage-retry-s", help="Seconds a trial waits for unwritable storage before its checkpoint write counts as a failure (default 180)."),
    wait_for_resources: Optional[float] = typer.Option(None, "--wait-for-resources", help="When no node can hold one trial (its CPUs and GPUs on one node): seconds to wait for one, on an autoscaling cluster (default 0: refuse at once, naming the request and the largest node)."),
    verbose: bool = typer.Option(False, "--verbose", help="Also show Ray's own banners, hints and status tables."),
    **fields: Any,
) -> None:
    """Search MetaXL's hyperparameters (beta, r, RTN placement, source) with Optuna on Ray Tune, tracked in MLflow."""
    from metaxl_tune.search.interrupt import EXIT_CODE, resume_hint, stopped_line
    from metaxl_tune.search.runner import OPTIONS_FILE, SearchOptions, run_search
    from metaxl_tune.search.warm_start import parse_names

    overrides = pop_config_overrides(fields)
    storage_flag = storage_named(storage)
    storage = storage or default_storage()
    with user_errors():
        if name is not None:
            check_name(name)
        for value, flag in ((max_concurrent, "--max-concurrent"), (time_budget, "--time-budget"), (grace_period, "--grace-period"),
                            (cpus_per_trial, "--cpus-per-trial"), (keep_checkpoints, "--keep-checkpoints")):
            check_positive(value, flag)
        check_positive(gpus_per_trial, "--gpus-per-trial", allow_zero=True)
        check_positive(wait_for_resources, "--wait-for-resources", allow_zero=True)
        check_output_dir(Path(storage), storage_flag)
        check_cache_dir(cache_dir)
        if resume:
            if name is None:
                raise ValueError("--resume needs --name of the search to continue")
            from metaxl_tune.search.driver_lock import refuse_while_held

            refuse_while_held(storage, name, command="search")
            options = SearchOptions.load(storage, name)
            refuse_changes(ctx, given_values(ctx, overrides), _saved_search_flags(options), what="search", name=name,
                           options_file=options.experiment_dir / OPTIONS_FILE)
            if address is not None or tracking_uri is not None:
                options.address = address or options.address
                options.tracking_uri = tracking_uri or options.tracking_uri
            if storage_retry_s is not None:
                options.storage_retry_s = storage_retry_s
            if wait_for_resources is not None:
                options.wait_for_resources_s = wait_for_resources
        else:
            task, target = overrides.get("task", "ner"), overrides.get("target", "tk")
            options = SearchOptions(
                name=name or f"{task}-{target}-{time.strftime('%Y%m%d-%H%M%S')}",
                space=space,
                base=overrides,
                preset=preset,
                num_samples=num_samples,
                max_concurrent=max_concurrent,
                time_budget_s=time_budget,
                scheduler=scheduler,
                sampler=sampler,
                warm_start=parse_names(warm_start),
                warm_start_top=warm_start_top,
                grace_period=grace_period,
                gpus_per_trial=gpus_per_trial,
                cpus_per_trial=cpus_per_trial,
                address=address,
                storage=storage,
                tracking_uri=tracking_uri,
                seed=search_seed,
                cache_dir=str(cache_dir) if cache_dir else None,
                keep_checkpoints=keep_checkpoints,
                **({} if storage_retry_s is None else {"storage_retry_s": storage_retry_s}),
                **({} if wait_for_resources is None else {"wait_for_resources_s": wait_for_resources}),
            )
        try:
            outcome = run_search(options, resume=resume, log=typer.echo, verbose=verbose)
        except KeyboardInterrupt:
            typer.echo("\n" + stopped_line("search", options.name, options.storage, OPTIONS_FILE))
            raise typer.Exit(code=EXIT_CODE) from None
    counts = outcome.counts
    typer.echo(
        f"search {outcome.name}: {counts['completed']} completed, {counts['pruned']} pruned, {counts['failed']} failed"
    )
    if outcome.interrupted:
        typer.echo(f"search {outcome.name} interrupted ({outcome.interrupted}); its state is saved. "
                   f"Resume with: {resume_hint('search', outcome.name, str(outcome.experiment_dir.parent))}")
        raise typer.Exit(code=EXIT_CODE)
    if outcome.failures is not None and outcome.failures.all_failed:
        typer.echo(f"search {outcome.name}: {outcome.failures.line()}", err=True)
        raise typer.Exit(code=1)
    if outcome.best is not None:
        from metaxl_tune.terminal import display_value

        shown = " ".join(f"{key}={display_value(value)}" for key, value in outcome.best["params"].items())
        typer.echo(textwrap.fill(f"best {outcome.best['value']:.2f}: {shown}", width=80, subsequent_indent="  ",
                                 break_long_words=False, break_on_hyphens=False))
    typer.echo(f"MLflow parent run {outcome.parent_run_id} at {outcome.tracking_uri}")
    if outcome.finished:
        typer.echo(f"export the winner with: metaxl-tune best --name {outcome.name} -o best.yaml")
    else:
        typer.echo(f"stopped early; resume with: metaxl-tune search --name {outcome.name} --resume --storage {outcome.experiment_dir.parent}")


search.__doc__ = (search.__doc__ or "") + "\n" + EXAMPLES
