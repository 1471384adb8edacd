"""Run folders protect finished work: `train --output DIR` never mixes or replaces a run silently.

A folder holds a run when it has any of ``RUN_FILES``. Training into it needs ``--resume``
(same config, compared field by field) or ``--overwrite`` (its run files are removed first,
and nothing else). The check reads only ``config.yaml``: it runs before any data or model work,
and nothing in the folder is written before the checkpoint has loaded and matched
(``Run.fit`` checks the checkpoint's own config again). A resume also keeps the best-dev weights
that belong to the resumed history (``keep_or_set_aside_best``). A run stopped before its first
resume checkpoint has nothing to resume from: both refusals (with ``--resume`` and without) name
the one command that starts it again, ``restart_command`` (its own config, ``--overwrite``), as
the stopped run's own line does.
"""

from __future__ import annotations

import itertools
import shlex
import shutil
from pathlib import Path
from typing import Any, Mapping

from metaxl_tune.common.folders import driver_folder_of
from metaxl_tune.common.yaml_files import parse_yaml, read_yaml_text
from metaxl_tune.config import RunConfig
from metaxl_tune.train.checkpoint import CheckpointError, has_checkpoint, read_best_metadata

CONFIG_FILE = "config.yaml"
RESULTS_FILE = "results.json"
RUN_FILES = (CONFIG_FILE, RESULTS_FILE, "checkpoint", "best", "model", "rtn.pt")
# Fields that change how a run is executed or recorded, not what it computes: a resume may
# change them (e.g. continue a cuda run on another device, or checkpoint more often).
OPERATIONAL_FIELDS = frozenset({"device", "checkpoint_every", "model_artifacts"})


class RunFolderError(ValueError):
    """The output folder cannot be used as asked; the message says what to change."""


def config_differences(saved: Mapping[str, Any], asked: RunConfig) -> list[str]:
    """Fields (other than the operational ones) whose values differ, as ``field (saved -> asked)``."""
    current = asked.to_dict()
    names = [name for name in current if name not in OPERATIONAL_FIELDS]
    return [f"{name} ({saved.get(name)!r} here, {current[name]!r} asked)" for name in names
            if saved.get(name) != current[name]]


def holds_run(folder: Path) -> list[str]:
    return [name for name in RUN_FILES if (folder / name).exists()]


def restart_command(folder: Path) -> str:
    """The one command that starts again a run stopped before its first checkpoint: its own
    config, into its own folder, replacing what the stopped run wrote (nothing to resume from)."""
    return f"metaxl-tune train --config {shlex.quote(str(Path(folder) / CONFIG_FILE))} -o {shlex.quote(str(folder))} --overwrite"


def check_output(folder: Path, config: RunConfig, *, resume: bool, overwrite: bool) -> Path | None:
    """Check ``--output`` before any work; return the checkpoint folder to resume from, if any."""
    folder = Path(folder)
    if resume and overwrite:
        raise RunFolderError("--resume and --overwrite exclude each other: continue the run, or replace it")
    if folder.exists() and not folder.is_dir():
        raise RunFolderError(f"--output {folder} is a file; name a folder")
    held = driver_folder_of(folder)
    if held is not None:
        # A run among Tune's and Optuna's state would be taken for theirs, and theirs for its.
        raise RunFolderError(f"--output {folder}: {held[0]} is {held[1]}; train into a folder of its own")
    if resume:
        checkpoint = folder / "checkpoint"
        if not has_checkpoint(checkpoint):
            if (folder / CONFIG_FILE).is_file():
                raise RunFolderError(f"--resume: {folder} holds a run stopped before its first checkpoint, so there "
                                     f"is nothing to resume; start it again with: {restart_command(folder)}")
            raise FileNotFoundError(f"--resume: no checkpoint in {checkpoint}; run without --resume to start fresh")
        saved_path = folder / CONFIG_FILE
        try:
            saved = parse_yaml(read_yaml_text(saved_path, "the run's config.yaml"), str(saved_path)) or {}
        except ValueError:
            raise RunFolderError(f"--resume: cannot read {saved_path}; the run's config is needed to resume it") from None
        differences = config_differences(saved if isinstance(saved, dict) else {}, config)
        if differences:
            raise RunFolderError(
                f"--resume: {folder} holds a run with another config: {'; '.join(differences)}; "
                "resume with the same options, or train into a new --output"
            )
        return checkpoint
    existing = holds_run(folder) if folder.is_dir() else []
    if existing and not overwrite:
        if CONFIG_FILE in existing and RESULTS_FILE not in existing and not has_checkpoint(folder / "checkpoint"):
            raise RunFolderError(f"--output {folder} holds a run stopped before its first checkpoint "
                                 f"({', '.join(existing)}); start it again with: {restart_command(folder)}, "
                                 "or choose a new folder")
        raise RunFolderError(
            f"--output {folder} holds another run ({', '.join(existing)}); choose a new folder, "
            "continue it with --resume, or replace it with --overwrite"
        )
    return None


def clear_run(folder: Path) -> None:
    """Remove a run's files from ``folder`` (for --overwrite); other files stay."""
    for name in holds_run(Path(folder)):
        path = Path(folder) / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def keep_or_set_aside_best(best_path: Path, best_epoch: int | None) -> None:
    """A resumed checkpoint holds no best weights (its copy was lost): ``best_path`` stays when
    it holds the history's best epoch, else it is renamed aside, never deleted (it may be the
    only copy)."""
    try:
        epoch = read_best_metadata(best_path).get("epoch")
    except CheckpointError:
        epoch = None
    if epoch is not None and epoch == best_epoch:
        return
    for number in itertools.count(1):
        aside = best_path.with_name(f"{best_path.stem}.set-aside-{number}{best_path.suffix}")
        if not aside.exists():
            best_path.rename(aside)
            return
