"""`metaxl-tune train`: one run from flags and/or a YAML config."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

import typer

from metaxl_tune.checkpoint import has_checkpoint
from metaxl_tune.config import ConfigError, build_config, load_config

from .common import user_errors
from .options import flag_name, pop_config_overrides, with_config_options

EXAMPLES = """
Examples:

  metaxl-tune train --model tiny --data synthetic --task ner --target tk --method metaxl --epochs 2

  metaxl-tune train --task ner --target qu --source related --rtn-layers last --meta-lr 1e-6

  metaxl-tune train --config best.yaml --seed 2 --output runs/best-seed2
"""


def _default_output(values: dict[str, Any]) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{values['task']}-{values['target']}-{values['method']}-{stamp}"


def _print_epoch(entry, epochs: int) -> None:
    meta = f"  meta loss {entry.meta_loss:.4f}" if entry.meta_loss is not None else ""
    memory = f", peak {entry.peak_memory_mib:.0f} MiB" if entry.peak_memory_mib is not None else ""
    typer.echo(
        f"epoch {entry.epoch:>3}/{epochs}  dev F1 {entry.dev_f1:6.2f}  test F1 {entry.test_f1:6.2f}  "
        f"train loss {entry.train_loss:.4f}{meta}  ({entry.epoch_seconds:.1f} s{memory})"
    )


@with_config_options
def train(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML run config; given flags override its fields."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Run directory (default: runs/<task>-<target>-<method>-<time>)."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Encoded-data cache (default: $METAXL_TUNE_CACHE or ~/.cache/metaxl-tune)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --output from its last epoch checkpoint."),
    print_config: bool = typer.Option(False, "--print-config", help="Print the resolved config as YAML and exit."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar per epoch."),
    **fields: Any,
) -> None:
    """Train one model (target-only, JT, JT w/ RTN or MetaXL) and report dev/test F1 per epoch."""
    overrides = pop_config_overrides(fields)
    with user_errors():
        if config is not None:
            run_config = load_config(config, overrides)
        else:
            try:
                run_config = build_config(overrides, origin="options")
            except ConfigError as error:
                # Name the flag rather than the field when the value came from a flag.
                message = str(error).removeprefix("options: ")
                field, _, rest = message.partition(": ")
                raise ConfigError(f"{flag_name(field)}: {rest}" if field in overrides else message) from None
        if print_config:
            typer.echo(run_config.to_yaml(), nl=False)
            return
        output = output or _default_output(run_config.to_dict())
        resume_from = output / "checkpoint" if resume else None
        if resume and not has_checkpoint(resume_from):
            raise FileNotFoundError(f"--resume: no checkpoint in {resume_from}; run without --resume to start fresh")
        from metaxl_tune.trainer import Run  # torch and transformers load only when training

        typer.echo(f"training {run_config.method} on {run_config.task}/{run_config.target}; output in {output}")
        run = Run(run_config, output, cache_dir=cache_dir, progress=progress, log=typer.echo)
        result = run.fit(
            on_epoch=lambda entry, _checkpoint: _print_epoch(entry, run_config.epochs), resume_from=resume_from
        )
    best = result.best
    typer.echo(
        f"best epoch {best.best_epoch}: dev F1 {best.best_dev_f1:.2f}, test F1 {best.best_test_f1:.2f}; "
        f"model, RTN, config and results.json in {output}"
    )


train.__doc__ = (train.__doc__ or "") + "\n" + EXAMPLES
