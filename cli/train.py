"""`metaxl-tune train`: one run from flags and/or a YAML config."""

from __future__ import annotations

import errno
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

from metaxl_tune.train.checkpoint import CheckpointError, CheckpointWriteError, has_checkpoint, verify_checkpoint
from metaxl_tune.common.origins import flag_for_field
from metaxl_tune.config import ConfigError, RunConfig, command_config, refuse_ignored_options, refuse_task_ignored_options
from metaxl_tune.common import stop_signals
from metaxl_tune.common.interruptible import nothing_left_to_save
from metaxl_tune.train.run_folder import check_output, clear_run, restart_command

from .common import check_cache_dir, check_output_dir, user_errors
from .options import pop_config_overrides, with_config_options

if TYPE_CHECKING:  # torch and transformers load only when training
    from metaxl_tune.model.fit import ModelFit

EXAMPLES = """
Examples:

  metaxl-tune train --model tiny --data synthetic --task ner --target tk --method metaxl --epochs 2

  metaxl-tune train --task ner --target qu --source related --rtn-layers last --meta-lr 1e-6

  metaxl-tune train --config best.yaml --seed 2 --output runs/best-seed2

  metaxl-tune train --config best.yaml --output runs/best-seed2 --resume --checkpoint-every 1
"""


def _default_output(values: dict[str, Any]) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{values['task']}-{values['target']}-{values['method']}-{stamp}"


def resolve_config(config: Path | None, overrides: dict[str, Any]) -> RunConfig:
    """The run's config from --config and the flags; errors name the flag when a flag's value
    is at fault (config.command_config), and flags the chosen method ignores are refused."""
    run_config = command_config(overrides, given=overrides, config_file=config)
    refuse_ignored_options(run_config.method, set(overrides) - {"method"})
    refuse_task_ignored_options(run_config.task, set(overrides) - {"task"})
    return run_config


_NO_EARLIER_CHECKPOINT = "no earlier checkpoint is kept in a train folder: start again with --overwrite (output {output})"


def check_run_inputs(
    run_config: RunConfig, overrides: dict[str, Any], output: Path, cache_dir: Path | None, *,
    resume: bool, overwrite: bool,
) -> tuple["ModelFit", Path | None]:
    """Every check of a train command after its config, in order, before any data or model
    work and before the run folder changes: the folders, the run already in --output, its
    checkpoint, then the config against its model. Returns the model fit (handed to the run,
    not computed again) and the checkpoint folder to resume from, if any."""
    check_output_dir(output, "--output")
    check_cache_dir(cache_dir)
    # Refuse to mix or replace a run before any work (train/run_folder.py states the rules).
    resume_from = check_output(output, run_config, resume=resume, overwrite=overwrite)
    if resume_from is not None:
        try:
            verify_checkpoint(resume_from)
        except CheckpointError as error:
            raise error.advise(_NO_EARLIER_CHECKPOINT.format(output=output)) from None
    from metaxl_tune.model.fit import check_fit, check_value_bounds  # torch and transformers load only when training

    try:
        fit = check_fit(run_config)
        check_value_bounds(run_config, fit)
    except ValueError as error:
        # The model's checks name fields (they serve searches too); name the flag when one was given.
        raise ConfigError(flag_for_field(str(error), overrides)) from None
    return fit, resume_from




def _interrupted_line(output: Path) -> str:
    """What an interrupted run kept, and how to go on from it."""
    if has_checkpoint(output / "checkpoint"):
        return (f"interrupted; the run is kept up to its last checkpoint; continue it with: "
                f"metaxl-tune train --config {output / 'config.yaml'} -o {output} --resume")
    return f"interrupted before the first checkpoint; start it again with: {restart_command(output)}"


def _print_epoch(entry, epochs: int) -> None:
    meta = f"  meta loss {entry.meta_loss:.4f}" if entry.meta_loss is not None else ""
    stage = "  fine-tune" if entry.stage == "finetune" else ""
    memory = f", peak {entry.peak_memory_mib:.0f} MiB" if entry.peak_memory_mib is not None else ""
    typer.echo(
        f"epoch {entry.epoch:>3}/{epochs}{stage}  dev F1 {entry.dev_f1:6.2f}  test F1 {entry.test_f1:6.2f}  "
        f"train loss {entry.train_loss:.4f}{meta}  ({entry.epoch_seconds:.1f} s{memory})"
    )


@with_config_options
def train(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML run config; given flags override its fields."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Run directory (default: runs/<task>-<target>-<method>-<time>)."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Encoded-data cache (default: $METAXL_TUNE_CACHE or ~/.cache/metaxl-tune)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --output from its last resume checkpoint (same config)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the run already in --output (its run files are removed)."),
    print_config: bool = typer.Option(False, "--print-config", help="Print the resolved config as YAML and exit."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar per epoch."),
    **fields: Any,
) -> None:
    """Train one model (target-only, JT, JT w/ RTN or MetaXL) and report dev/test F1 per epoch."""
    overrides = pop_config_overrides(fields)
    # SIGTERM and SIGHUP (a scheduler, a closed terminal) stop a run as Ctrl-C does.
    with user_errors(), stop_signals.as_keyboard_interrupt():
        run_config = resolve_config(config, overrides)
        if print_config:
            typer.echo(run_config.to_yaml(), nl=False)
            return
        output = output or _default_output(run_config.to_dict())
        fit, resume_from = check_run_inputs(run_config, overrides, output, cache_dir, resume=resume, overwrite=overwrite)
        from metaxl_tune.train.outcome import DivergedError
        from metaxl_tune.train.trainer import Run

        try:
            run = Run(run_config, output, fit=fit, cache_dir=cache_dir, progress=progress, log=typer.echo)
        except KeyboardInterrupt:
            # Data preparation and the tiny tokenizer's training write nothing in the run folder.
            typer.echo(f"interrupted before training started; nothing was written to {output}", err=True)
            nothing_left_to_save()
            raise typer.Exit(code=stop_signals.exit_status()) from None
        # Printed once the run is built, so that a bad input stays the only line.
        typer.echo(f"training {run_config.method} on {run_config.task}/{run_config.target}; output in {output}")
        if overwrite:
            clear_run(output)
        try:
            result = run.fit(
                on_epoch=lambda entry, _checkpoint: _print_epoch(entry, run_config.total_epochs),
                resume_from=resume_from,
                wait_for_checkpoints=False,
            )
        except DivergedError as error:
            # Not a bad input (exit 1): the values were valid, training with them was not stable.
            # The folder keeps what was written; --overwrite replaces it (a resume would need the
            # same, diverging, config).
            typer.secho(f"error: training diverged: {error}; then start again with --overwrite (output {output})",
                        err=True, fg=typer.colors.RED)
            raise typer.Exit(code=1) from None
        except KeyboardInterrupt:
            typer.echo("\n" + _interrupted_line(output), err=True)
            raise typer.Exit(code=stop_signals.exit_status()) from None
        except CheckpointError as error:
            raise error.advise(_NO_EARLIER_CHECKPOINT.format(output=output)) from None
        except CheckpointWriteError as error:
            # A user error (exit status 2, one line), like the other file-system failures.
            fix = "free some space" if error.cause.errno in (errno.ENOSPC, errno.EDQUOT) else "check the disk"
            again = ("continue it with --resume" if has_checkpoint(output / "checkpoint")
                     else "start it again with --overwrite")
            raise error.advise(f"the run stopped; {fix}, then {again} (output {output})") from None
    best = result.best
    typer.echo(
        f"best epoch {best.best_epoch}: dev F1 {best.best_dev_f1:.2f}, test F1 {best.best_test_f1:.2f}; "
        f"best-dev weights (best/), model, RTN, config and results.json in {output}"
    )


train.__doc__ = (train.__doc__ or "") + "\n" + EXAMPLES
