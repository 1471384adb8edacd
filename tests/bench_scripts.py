"""Runs a bench/ script in the test's process: bench/ holds scripts, not a package."""

from __future__ import annotations

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"


def run_bench(name: str, argv: list[str]) -> dict:
    """``bench/<name>.py``'s ``main(argv)``, loaded from its file; returns the summary it returns."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(argv)


def tiny_grid(*meta_lrs: float) -> str:
    """An all-categorical space over ``meta_lrs`` for the search-quality table's builder: tiny
    1-epoch MetaXL trainings (seconds each), everything else fixed."""
    values = ", ".join(f"{value:.1e}" for value in meta_lrs)
    return f"""
metric: best_dev_f1
mode: max
fixed: {{method: metaxl, epochs: 1, lr: 3.0e-3, source_size: 16, target_size: 16, batch_size: 8, max_length: 16,
        eval_max_length: 16, rtn_bottleneck: 8, rtn_layers: last, source: en}}
parameters:
  meta_lr: {{type: categorical, values: [{values}]}}
"""


def pretrained_models_seen(space, target, params, seed, cache_dir, model) -> dict:
    """A training function with the table builder's ``train_row`` signature, for its process
    pool (so importable by name): the line it returns records the pre-trained model folders
    in the cache when the training was asked to start."""
    folder = Path(cache_dir) / "pretrained"
    seen = sorted(entry.name for entry in folder.iterdir()) if folder.is_dir() else []
    return {"target": target, "params": params, "seed": seed, "pretrained_seen": seen,
            "epochs": [{"epoch": 1, "dev_f1": 0.0, "test_f1": 0.0, "steps": 1, "seconds": 0.0}], "seconds": 0.0}
