"""Epoch checkpoints: everything needed to continue a run bit-identically on CPU.

One file holds theta, phi, both optimizers and schedulers, the RNG states and the history
of epoch results. It is written to a temporary name and renamed, so a run killed mid-write
keeps the previous epoch's checkpoint, and it loads with ``weights_only=True``: a checkpoint
from a shared store can never execute code.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

STATE_FILE = "state.pt"


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(directory: Path, state: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    partial = directory / f"{STATE_FILE}.{os.getpid()}.partial"
    torch.save(state, partial)
    os.replace(partial, directory / STATE_FILE)
    return directory


def has_checkpoint(directory: Path) -> bool:
    return (directory / STATE_FILE).is_file()


def load_checkpoint(directory: Path) -> dict[str, Any]:
    path = directory / STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; run without --resume to start from epoch 1")
    return torch.load(path, map_location="cpu", weights_only=True)
