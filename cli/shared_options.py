"""What `search` and `ablate` share, defined once: the options that say where and with what
their trials run (Ray cluster, storage, MLflow tracking, resources per trial, the storage retry,
the wait for resources), their checks, and the steps around a run (--resume, stopping).

Both commands drive the same executor (search/driver/runner.py) with the same SearchOptions
fields, so one table below declares those flags; each command keeps its own words in the help
(a search runs trials, an ablation runs). `with_shared_options` adds the table's options to a
command's signature after its own, and `SharedOptions.pop` takes their values back out.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

import typer

from metaxl_tune.common.names import check_name
from metaxl_tune.common.origins import storage_named
from metaxl_tune.common.paths import default_storage

from .common import check_cache_dir, check_output_dir, check_positive, user_errors
from .options import flag_name, with_config_options
from .resume_flags import given_values, refuse_changes, saved_config_fields

T = TypeVar("T")

_WAIT_HELP = ("When no node can hold one trial (its CPUs and GPUs on one node): seconds to wait for one, on an "
              "autoscaling cluster (default 0: refuse at once, naming the request and the largest node).")
_STORAGE_DEFAULT = "(default: $METAXL_TUNE_RUNS/metaxl-searches, else metaxl-runs/metaxl-searches)."


def _help(search: str, ablate: str) -> dict[str, str]:
    return {"search": search, "ablate": ablate}


def _per_unit(template: str) -> dict[str, str]:
    """One help text with the command's unit of work in it: a search's trial, an ablation's run."""
    return _help(template.format(unit="trial"), template.format(unit="run"))


# Each shared option: its parameter name (the flag is its --dashed form), type, default and help per command.
OPTIONS: tuple[tuple[str, Any, Any, dict[str, str]], ...] = (
    ("max_concurrent", Optional[int], None,
     _help("Most trials at once (default: as many as resources allow).", "Most runs at once.")),
    ("gpus_per_trial", Optional[float], None,
     _help("GPUs per trial (default: 1 if the cluster has GPUs, else 0; 0.5 packs two).",
           "GPUs per run (default: 1 if the cluster has GPUs).")),
    ("cpus_per_trial", float, 1.0, _per_unit("CPU cores per {unit}.")),
    ("address", Optional[str], None,
     _help("Ray cluster: HOST:PORT or auto (default: $RAY_ADDRESS, else a local Ray).",
           "Ray cluster HOST:PORT or auto (default: a local Ray).")),
    ("storage", Optional[str], None,
     _help(f"Tune storage path, shared by every node of a multi-node search {_STORAGE_DEFAULT}",
           f"Tune storage path {_STORAGE_DEFAULT}")),
    ("tracking_uri", Optional[str], None,
     _help("MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///metaxl-runs/mlflow.db).",
           "MLflow tracking URI.")),
    ("cache_dir", Optional[Path], None, _help("Encoded-data cache shared by the trials.", "Encoded-data cache.")),
    ("storage_retry_s", Optional[float], None,
     _per_unit("Seconds a {unit} waits for unwritable storage before its checkpoint write counts as a failure "
               "(default 180).")),
    ("wait_for_resources", Optional[float], None, _help(_WAIT_HELP, _WAIT_HELP)),
)


def with_shared_options(command_name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Extend a command's signature with the shared options after its own, then the run config's
    (with_config_options); it receives both in **kwargs, where ``pop_config_overrides`` and
    ``SharedOptions.pop`` take them out."""

    def extend(command: Callable[..., Any]) -> Callable[..., Any]:
        own = [p for p in inspect.signature(command).parameters.values() if p.kind != inspect.Parameter.VAR_KEYWORD]
        shared = [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation,
                              default=typer.Option(default, flag_name(name), help=helps[command_name]))
            for name, annotation, default, helps in OPTIONS
        ]
        command.__signature__ = inspect.Signature(own + shared)  # type: ignore[attr-defined]
        return with_config_options(command)

    return extend


@dataclass
class SharedOptions:
    """The shared options' values, as the command line gave them (storage: its default filled in)."""

    max_concurrent: int | None
    gpus_per_trial: float | None
    cpus_per_trial: float
    address: str | None
    storage: str
    tracking_uri: str | None
    cache_dir: Path | None
    storage_retry_s: float | None
    wait_for_resources: float | None
    storage_flag: str
    """How errors name the storage: --storage, or the variable its default came from."""

    @classmethod
    def pop(cls, values: dict[str, Any], name: str | None) -> "SharedOptions":
        """Remove the shared options from a command's keyword arguments and check their values,
        and the command's --name; a bad one ends the command with one line (exit 2)."""
        given = {option: values.pop(option) for option, *_ in OPTIONS}
        shared = cls(**{**given, "storage": given["storage"] or default_storage()},
                     storage_flag=storage_named(given["storage"]))
        with user_errors():
            if name is not None:
                check_name(name)
            for value, flag in ((shared.max_concurrent, "--max-concurrent"), (shared.cpus_per_trial, "--cpus-per-trial")):
                check_positive(value, flag)
            check_positive(shared.gpus_per_trial, "--gpus-per-trial", allow_zero=True)
            check_positive(shared.wait_for_resources, "--wait-for-resources", allow_zero=True)
        return shared

    def check_folders(self) -> None:
        """The storage and the data cache can be written (before anything starts)."""
        check_output_dir(Path(self.storage), self.storage_flag)
        check_cache_dir(self.cache_dir)

    def option_fields(self) -> dict[str, Any]:
        """SearchOptions fields for a new search or ablation; unset retry and wait keep their defaults."""
        return {
            "max_concurrent": self.max_concurrent, "gpus_per_trial": self.gpus_per_trial,
            "cpus_per_trial": self.cpus_per_trial, "address": self.address, "storage": self.storage,
            "tracking_uri": self.tracking_uri, "cache_dir": str(self.cache_dir) if self.cache_dir else None,
            **({} if self.storage_retry_s is None else {"storage_retry_s": self.storage_retry_s}),
            **({} if self.wait_for_resources is None else {"wait_for_resources_s": self.wait_for_resources}),
        }

    def resumed(self, ctx: typer.Context, overrides: dict[str, Any], name: str | None, *, options_class: type[T],
                command: str, what: str, saved_flags: Callable[[T], dict[str, Any]]) -> T:
        """The saved options of the search or ablation ``name``, once no flag would change what it
        is (``saved_flags``); where it runs may change: the cluster, the tracking server, the
        storage retry and the wait for resources given now replace the saved ones."""
        from metaxl_tune.search.driver.lock import refuse_while_held
        from metaxl_tune.search.driver.options import OPTIONS_FILE

        if name is None:
            raise ValueError(f"--resume needs --name of the {what} to continue")
        # A driver in its first seconds has not saved its options yet: name it, rather than say there is none.
        refuse_while_held(self.storage, name, command=command)
        options = options_class.load(self.storage, name)  # type: ignore[attr-defined]
        refuse_changes(ctx, given_values(ctx, overrides), saved_flags(options), what=what, name=name,
                       options_file=options.experiment_dir / OPTIONS_FILE)
        options.address = self.address or options.address
        options.tracking_uri = self.tracking_uri or options.tracking_uri
        if self.storage_retry_s is not None:
            options.storage_retry_s = self.storage_retry_s
        if self.wait_for_resources is not None:
            options.wait_for_resources_s = self.wait_for_resources
        return options


def saved_shared_flags(options: Any) -> dict[str, Any]:
    """The saved values of the flags both commands refuse to change on --resume."""
    return {
        "preset": options.preset, "max_concurrent": options.max_concurrent, "gpus_per_trial": options.gpus_per_trial,
        "cpus_per_trial": options.cpus_per_trial, "cache_dir": options.cache_dir, **saved_config_fields(options.base),
    }


def run_or_say_stopped(command: str, options: Any, run: Callable[[], T]) -> T:
    """``run()``; a Ctrl-C that stops it at once (before Tune's loop) ends with exit 130 and a
    line saying whether there is anything to resume."""
    from metaxl_tune.common.stop_signals import exit_status
    from metaxl_tune.search.driver.options import OPTIONS_FILE
    from metaxl_tune.search.faults.interrupt import stopped_line

    try:
        return run()
    except KeyboardInterrupt:
        typer.echo("\n" + stopped_line(command, options.name, options.storage, OPTIONS_FILE, tracking_uri=options.tracking_uri))
        raise typer.Exit(code=exit_status()) from None


def exit_if_stopped(command: str, what: str, name: str, *, interrupted: str | None, failures: Any, storage: str,
                    unit: str = "trials", tracking_uri: str | None = None) -> None:
    """An interrupted run exits 130 saying how to resume it; one whose trials all failed exits 1
    with the most common reason."""
    from metaxl_tune.common.stop_signals import exit_status
    from metaxl_tune.search.faults.interrupt import resume_hint

    if interrupted:
        typer.echo(f"{what} {name} interrupted ({interrupted}); its state is saved. "
                   f"Resume with: {resume_hint(command, name, storage, tracking_uri=tracking_uri)}")
        raise typer.Exit(code=exit_status(interrupted))
    if failures is not None and failures.all_failed:
        typer.echo(f"{what} {name}: {failures.line(unit)}", err=True)
        raise typer.Exit(code=1)
