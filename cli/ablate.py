"""`metaxl-tune ablate`: the paper's ablations (or your own study) for your targets and seeds."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from metaxl_tune.common.names import check_name

from .common import check_positive, user_errors
from .options import pop_config_overrides
from .shared_options import SharedOptions, exit_if_stopped, run_or_say_stopped, saved_shared_flags, with_shared_options

EXAMPLES = """
Examples:

  metaxl-tune ablate --study methods --task ner --targets qu,cdo,ilo --seeds 3 --dry-run

  metaxl-tune ablate --study placement --task ner --targets tk --seeds 2 --preset demo

  metaxl-tune ablate --name methods-ner-20261124-101500 --resume
"""


def _print_dry_run(the_plan) -> None:
    from metaxl_tune.search.space.study import SECONDS_PER_JT_STEP

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
        "study": options.study, "targets": ",".join(options.targets), "seeds": options.seeds,
        "address": options.address, "tracking_uri": options.tracking_uri, **saved_shared_flags(options),
    }


@with_shared_options("ablate")
def ablate(
    ctx: typer.Context,
    study: str = typer.Option("methods", "--study", help="Study: methods, placement, jt-rtn, source-size, source-language, paper, or a YAML path."),
    targets: Optional[str] = typer.Option(None, "--targets", help="Comma-separated target languages, e.g. qu,cdo,tk."),
    seeds: int = typer.Option(1, "--seeds", help="Seeds per setting and target (seed = 1..N)."),
    preset: Optional[str] = typer.Option(None, "--preset", help="demo = tiny model + synthetic data, small and fast."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the grid, the number of runs and estimated device-hours; run nothing."),
    name: Optional[str] = typer.Option(None, "--name", help="Ablation name (default: <study>-<task>-<time>)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the ablation --name."),
    **fields: Any,
) -> None:
    """Run a study's grid (settings x targets x seeds) on Ray, tracked in MLflow; then `metaxl-tune report`."""
    import time

    from metaxl_tune.search.driver.ablate import AblationOptions, plan, run_ablation
    from metaxl_tune.search.faults.interrupt import resume_hint

    overrides = pop_config_overrides(fields)
    shared = SharedOptions.pop(fields, name)
    with user_errors():
        check_positive(seeds, "--seeds")
        if not dry_run:
            shared.check_folders()
        if resume:
            options = shared.resumed(ctx, overrides, name, options_class=AblationOptions, command="ablate",
                                     what="ablation", saved_flags=_saved_ablation_flags)
        else:
            if name is None:
                # The study file's name starts the default; it follows the rule too.
                name = check_name(f"{Path(study).stem}-{overrides.get('task', 'ner')}-{time.strftime('%Y%m%d-%H%M%S')}",
                                  f"--name (default from --study {study})")
            options = AblationOptions(
                name=name, study=study,
                targets=[t.strip() for t in (targets or overrides.get("target", "")).split(",") if t.strip()],
                seeds=seeds, base={key: value for key, value in overrides.items() if key != "target"}, preset=preset,
                **shared.option_fields(),
            )
        if dry_run:
            _print_dry_run(plan(options))
            return
        outcome = run_or_say_stopped("ablate", options, lambda: run_ablation(options, resume=resume, log=typer.echo))
    typer.echo(f"ablation {outcome['name']}: {outcome['completed']} of {outcome['runs']} runs completed, {outcome['failed']} failed")
    exit_if_stopped("ablate", "ablation", outcome["name"], interrupted=outcome["interrupted"], failures=outcome["failures"],
                    storage=str(Path(options.storage).resolve()), unit="runs", tracking_uri=options.tracking_uri)
    if outcome["finished"]:
        typer.echo(f"tables: metaxl-tune report --name {outcome['name']} --format md")
    else:
        typer.echo(f"stopped early; resume with: {resume_hint('ablate', outcome['name'], str(Path(options.storage).resolve()), tracking_uri=options.tracking_uri)}")


ablate.__doc__ = (ablate.__doc__ or "") + "\n" + EXAMPLES
