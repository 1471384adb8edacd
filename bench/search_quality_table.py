"""The tabular benchmark's table: every point of a categorical space, trained for real, per target and seed.

One JSON line per (target, config, seed) in an append-only file, written as each training ends:
a build that is killed keeps every line it wrote and a restart trains only the rest (a line cut
off by the kill is dropped first). Each line holds the sampled parameters and, per epoch, dev F1,
test F1, the epoch's optimizer steps and its seconds, so a replay can charge a pruned trial for
the epochs it ran. Runs one after another, or in ``jobs`` processes with one torch thread each.

Used by bench/search_quality.py (``--build-only`` builds without replaying).
"""

from __future__ import annotations

import concurrent.futures
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable

from metaxl_tune.config import RunConfig
from metaxl_tune.search.space import SearchSpace

BASE = dict(model="tiny-pretrained", data="synthetic", task="ner")
"""The table's runs: the issue's model and data; the grid's space sets the rest."""


def config_key(params: dict[str, Any]) -> str:
    """A config's identity in the table: its sampled parameters, sorted, as JSON."""
    return json.dumps(params, sort_keys=True)


def sampled_params(space: SearchSpace, point: dict[str, Any]) -> dict[str, Any]:
    return {name: point[name] for name in space.names if name in point}


def read_table(path: Path) -> list[dict[str, Any]]:
    """The table's complete lines; a last line cut off by a killed build is removed from the file."""
    if not path.is_file():
        return []
    raw = path.read_bytes()
    if raw and not raw.endswith(b"\n"):
        # Only the last line can be partial (lines are written whole, then flushed).
        raw = raw[: raw.rfind(b"\n") + 1]
        path.write_bytes(raw)
    return [json.loads(line) for line in raw.decode("utf-8").splitlines() if line.strip()]


def row_key(target: str, params: dict[str, Any], seed: int) -> tuple[str, str, int]:
    return target, config_key(params), seed


def planned(space: SearchSpace, targets: Iterable[str], seeds: Iterable[int]) -> list[tuple[str, dict, int]]:
    # Seed-major: a table cut short still covers every config of every target with the first seeds.
    return [(target, sampled_params(space, point), seed)
            for seed in seeds for target in targets for point in space.grid()]


def train_row(space: SearchSpace, target: str, params: dict[str, Any], seed: int, cache_dir: str,
              model: str = BASE["model"]) -> dict[str, Any]:
    """Train one config and return its table line."""
    from metaxl_tune.trainer import Run

    config = space.to_run_config(RunConfig(**{**BASE, "model": model}, target=target), params).replace(seed=seed)
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as directory:
        run = Run(config, Path(directory), cache_dir=Path(cache_dir), progress=False, save_model=False)
        result = run.fit()
        steps = run.steps_per_epoch
    return {
        "target": target, "params": params, "seed": seed,
        "epochs": [{"epoch": entry.epoch, "dev_f1": round(entry.dev_f1, 4), "test_f1": round(entry.test_f1, 4),
                    "steps": steps, "seconds": round(entry.epoch_seconds, 3)} for entry in result.history],
        "seconds": round(time.monotonic() - started, 2),
    }


def _single_threaded() -> None:
    import torch

    torch.set_num_threads(1)


def build(space: SearchSpace, path: Path, targets: list[str], seeds: list[int], *, jobs: int = 1,
          model: str = BASE["model"],
          say=lambda line: print(line, file=sys.stderr, flush=True)) -> list[dict[str, Any]]:
    """Train every (target, config, seed) the table lacks, appending each line as it ends."""
    from metaxl_tune.trainer import default_cache_dir

    path.parent.mkdir(parents=True, exist_ok=True)
    rows = read_table(path)
    done = {row_key(row["target"], row["params"], row["seed"]) for row in rows}
    todo = [item for item in planned(space, targets, seeds) if row_key(*item) not in done]
    say(f"table {path}: {len(done)} lines kept, {len(todo)} to train")
    if not todo:
        return rows
    cache_dir = str(default_cache_dir())
    started = time.monotonic()
    with path.open("a", encoding="utf-8") as table:
        def keep(row: dict[str, Any]) -> None:
            table.write(json.dumps(row) + "\n")
            table.flush()
            rows.append(row)
            say(f"trained {row['target']} {config_key(row['params'])} seed {row['seed']}: "
                f"best dev {max(e['dev_f1'] for e in row['epochs']):.2f} ({row['seconds']:.0f} s; "
                f"{len(rows) - len(done)}/{len(todo)} in {time.monotonic() - started:.0f} s)")

        if jobs == 1:
            _single_threaded()
            for item in todo:
                keep(train_row(space, *item, cache_dir, model))
        else:
            with concurrent.futures.ProcessPoolExecutor(jobs, initializer=_single_threaded) as pool:
                futures = [pool.submit(train_row, space, *item, cache_dir, model) for item in todo]
                for future in concurrent.futures.as_completed(futures):
                    keep(future.result())
    return rows
