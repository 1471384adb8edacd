"""`metaxl-tune search`: Optuna + Ray Tune + MLflow over a YAML search space."""

from __future__ import annotations

import textwrap
import time
from typing import Any, Optional

import typer


from metaxl_tune.search.space.racing import DEFAULT_MAX_REPEATS

from .common import check_positive, user_errors
from .options import pop_config_overrides
from .shared_options import SharedOptions, exit_if_stopped, run_or_say_stopped, saved_shared_flags, with_shared_options

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
        "space": options.space, "num_samples": options.num_samples, "time_budget": options.time_budget_s,
        "scheduler": options.scheduler, "grace_period": options.grace_period, "search_seed": options.seed,
        "repeats": str(options.repeats), "max_repeats": options.max_repeats,
        "keep_checkpoints": options.keep_checkpoints, "sampler": options.sampler,
        "warm_start": ",".join(options.warm_start) or None, "warm_start_top": options.warm_start_top,
        **saved_shared_flags(options),
    }


@with_shared_options("search")
def search(
    ctx: typer.Context,
    # No default of its own: a --space typed next to --preset wins even when it names ner.
    space: Optional[str] = typer.Option(None, "--space", show_default="ner, or the preset's",
                                        help="Search space: a shipped name (ner, sa, paper-grid, demo) or a YAML path."),
    preset: Optional[str] = typer.Option(None, "--preset", help="demo = tiny model + synthetic data + demo space (offline, minutes on 2 CPUs); flags given with it win over its values."),
    name: Optional[str] = typer.Option(None, "--name", help="Search name (default: <task>-<target>-<time>)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the search --name from its saved state."),
    num_samples: int = typer.Option(10, "--num-samples", help="Total number of trials."),
    time_budget: Optional[float] = typer.Option(None, "--time-budget", help="Stop starting trials after this many seconds."),
    scheduler: str = typer.Option("asha", "--scheduler", help="asha (prune weak trials by epoch) or fifo."),
    sampler: str = typer.Option("tpe", "--sampler", help="Optuna sampler: tpe, random, gp, cmaes, qmc or grid (all-categorical spaces such as paper-grid)."),
    warm_start: Optional[str] = typer.Option(None, "--warm-start", help="Earlier searches (NAME[,NAME...], same --storage) whose finished and pruned trials seed this one."),
    warm_start_top: int = typer.Option(0, "--warm-start-top", help="Run the K best configs of the --warm-start searches first."),
    grace_period: int = typer.Option(1, "--grace-period", help="Epochs every trial gets before ASHA may prune it."),
    search_seed: int = typer.Option(0, "--search-seed", help="Seed of Optuna's sampler and of every trial's training seed (the k-th run of each config trains with the same seed, drawn from it)."),
    repeats: str = typer.Option("auto", "--repeats", help="Seeds per config: auto (race configs that beat the incumbent on paired seeds, up to --max-repeats) or N (every config N times; 1: one seed each)."),
    max_repeats: int = typer.Option(DEFAULT_MAX_REPEATS, "--max-repeats", help=f"With --repeats auto: the most seeds one config gets (default {DEFAULT_MAX_REPEATS})."),
    keep_checkpoints: int = typer.Option(1, "--keep-checkpoints", help="Newest resume checkpoints kept per trial (with 2, a damaged one falls back to the one before)."),
    verbose: bool = typer.Option(False, "--verbose", help="Also show Ray's own banners, hints and status tables."),
    **fields: Any,
) -> None:
    """Search MetaXL's hyperparameters (beta, r, RTN placement, source) with Optuna on Ray Tune, tracked in MLflow."""
    from metaxl_tune.search.driver.options import SearchOptions
    from metaxl_tune.search.driver.runner import run_search
    from metaxl_tune.search.driver.warm_start import parse_names
    from metaxl_tune.search.faults.interrupt import resume_hint

    overrides = pop_config_overrides(fields)
    shared = SharedOptions.pop(fields, name)
    with user_errors():
        for value, flag in ((time_budget, "--time-budget"), (grace_period, "--grace-period"), (keep_checkpoints, "--keep-checkpoints")):
            check_positive(value, flag)
        shared.check_folders()
        if resume:
            options = shared.resumed(ctx, overrides, name, options_class=SearchOptions, command="search", what="search",
                                     saved_flags=_saved_search_flags)
        else:
            task, target = overrides.get("task", "ner"), overrides.get("target", "tk")
            options = SearchOptions(
                name=name or f"{task}-{target}-{time.strftime('%Y%m%d-%H%M%S')}", space=space, base=overrides,
                preset=preset, num_samples=num_samples, time_budget_s=time_budget, scheduler=scheduler, sampler=sampler,
                warm_start=parse_names(warm_start), warm_start_top=warm_start_top, grace_period=grace_period,
                seed=search_seed, repeats=repeats, max_repeats=max_repeats, keep_checkpoints=keep_checkpoints,
                **shared.option_fields(),
            )
        outcome = run_or_say_stopped("search", options, lambda: run_search(options, resume=resume, log=typer.echo, verbose=verbose))
    counts = outcome.counts
    typer.echo(
        f"search {outcome.name}: {counts['completed']} completed, {counts['pruned']} pruned, {counts['failed']} failed"
    )
    exit_if_stopped("search", "search", outcome.name, interrupted=outcome.interrupted, failures=outcome.failures,
                    storage=str(outcome.experiment_dir.parent), tracking_uri=options.tracking_uri)
    if outcome.best is not None:
        from metaxl_tune.common.terminal import display_value

        shown = " ".join(f"{key}={display_value(value)}" for key, value in outcome.best["params"].items())
        seeds = outcome.best.get("seeds", 1)
        over = f" (mean of {seeds} seeds)" if seeds > 1 else " (one seed)"
        typer.echo(textwrap.fill(f"best {outcome.best['value']:.2f}{over}: {shown}", width=80, subsequent_indent="  ",
                                 break_long_words=False, break_on_hyphens=False))
    typer.echo(f"MLflow parent run {outcome.parent_run_id} at {outcome.tracking_uri}")
    if outcome.finished:
        typer.echo(f"export the winner with: metaxl-tune best --name {outcome.name} -o best.yaml")
    else:
        typer.echo(f"stopped early; resume with: {resume_hint('search', outcome.name, str(outcome.experiment_dir.parent), tracking_uri=options.tracking_uri)}")


search.__doc__ = (search.__doc__ or "") + "\n" + EXAMPLES
