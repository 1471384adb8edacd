"""Run folders protect finished work: `train --output DIR` never mixes or replaces a run silently.

A folder holds a run when it has any of ``RUN_FILES``. Training into it needs ``--resume``
(same config, compared field by field) or ``--overwrite`` (its run files are removed first,
and nothing else). The check reads only ``config.yaml``: it runs before any data or model work,
and nothing in the folder is written before the checkpoint has loaded and matched
(``Run.fit`` checks the checkpoint's own config again).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Mapping

import yaml

from metaxl_tune.checkpoint import has_checkpoint
from metaxl_tune.config import RunConfig

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


def check_output(folder: Path, config: RunConfig, *, resume: bool, overwrite: bool) -> Path | None:
    """Check ``--output`` before any work; return the checkpoint folder to resume from, if any."""
    folder = Path(folder)
    if resume and overwrite:
        raise RunFolderError("--resume and --overwrite exclude each other: continue the run, or replace it")
    if folder.exists() and not folder.is_dir():
        raise RunFolderError(f"--output {folder} is a file; name a folder")
    if resume:
        checkpoint = folder / "checkpoint"
        if not has_checkpoint(checkpoint):
            raise FileNotFoundError(f"--resume: no checkpoint in {checkpoint}; run without --resume to start fresh")
        saved_path = folder / CONFIG_FILE
        try:
            saved = yaml.safe_load(saved_path.read_text(encoding="utf-8")) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
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
