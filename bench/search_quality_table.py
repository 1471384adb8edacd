"""The tabular benchmark's table: every point of a categorical space, trained for real, per target and seed.

One JSON line per (target, config, seed) in an append-only file, written as each training ends:
a build that is killed keeps every line it wrote and a restart trains only the rest (a line cut
off by the kill is dropped first). Each line holds the sampled parameters and, per epoch, dev F1,
test F1, the epoch's optimizer steps and its seconds, so a replay can charge a pruned trial for
the epochs it ran. Runs one after another, or in ``jobs`` processes with one torch thread each.

Seeds are added the same way: ``--seeds 1-8`` on a table of seeds 1-2 trains only the lines of
seeds 3-8 and appends them; the lines already there are never retrained nor rewritten (a new seed
is a new line, and the truth a replay reads is the mean over whatever seeds a config has).

    nice -n 15 .venv/bin/python bench/search_quality_table.py --seeds 1-8 --jobs 2

Used by bench/search_quality.py (``--seeds`` there builds what is missing before replaying).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from metaxl_tune.config import RunConfig
from metaxl_tune.search.space.schema import SearchSpace

BASE = dict(model="tiny-pretrained", data="synthetic", task="ner")
"""The table's runs: the issue's model and data; the grid's space sets the rest."""

HERE = Path(__file__).resolve().parent
DEFAULT_SPACE = HERE / "data" / "search_quality_space.yaml"
DEFAULT_TABLE = HERE / "data" / "search_quality_table.jsonl"


def parse_seeds(text: str) -> list[int]:
    """``--seeds``: ``N`` alone (seeds 1 to N), ``A-B`` (A to B), or a comma list of seeds and
    ranges (``1-4,7``: 1, 2, 3, 4 and 7).

    Raises ValueError with the one line to print."""
    seeds: list[int] = []
    parts = text.split(",")
    for part in parts:
        low, dash, high = part.strip().partition("-")
        try:
            first, last = (int(low), int(high)) if dash else (1 if len(parts) == 1 else int(low), int(low))
        except ValueError:
            raise ValueError(f"--seeds {text}: {part.strip()!r} is not a number or a range; "
                             "give N (seeds 1 to N), A-B or a comma list, e.g. --seeds 1-8") from None
        if first < 0 or last < first:
            raise ValueError(f"--seeds {text}: {part.strip()!r} is empty or negative; give A-B with 0 <= A <= B")
        seeds.extend(seed for seed in range(first, last + 1) if seed not in seeds)
    return seeds


def seed_counts(rows: list[dict[str, Any]]) -> dict[str, dict[int, int]]:
    """Per target: how many configs have how many seeds ({2: 48} = every config has 2)."""
    per_config: dict[tuple[str, str], set[int]] = {}
    for row in rows:
        per_config.setdefault((row["target"], config_key(row["params"])), set()).add(row["seed"])
    counts: dict[str, dict[int, int]] = {}
    for (target, _), seeds in per_config.items():
        counts.setdefault(target, {})
        counts[target][len(seeds)] = counts[target].get(len(seeds), 0) + 1
    return {target: dict(sorted(value.items())) for target, value in counts.items()}


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
    from metaxl_tune.train.trainer import Run

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


def prepare_model(cache_dir: str, model: str) -> None:
    """Make the table's model ready before any line trains, in the building process:
    tiny-pretrained is pre-trained on first use, ``jobs`` workers starting at once would each
    pre-train their own copy, and its MLM collator's seeded generator refuses to run in a
    process pool's worker."""
    from metaxl_tune.model.pretrain import PRETRAINED, ensure_pretrained

    if model == PRETRAINED:
        ensure_pretrained(Path(cache_dir), progress=False)


def build(space: SearchSpace, path: Path, targets: list[str], seeds: list[int], *, jobs: int = 1,
          model: str = BASE["model"], say=lambda line: print(line, file=sys.stderr, flush=True),
          train: Callable[..., dict[str, Any]] = train_row) -> list[dict[str, Any]]:
    """Train every (target, config, seed) the table lacks, appending each line as it ends.

    Lines already in the table are read, never trained again nor written again: the file only
    grows. ``train`` is ``train_row`` (a test passes its own, with train_row's signature).
    The model is made ready first, once, in this process (as ``make demo`` makes it); then the
    lines train, one after another or ``jobs`` at a time."""
    from metaxl_tune.common.paths import default_cache_dir

    path.parent.mkdir(parents=True, exist_ok=True)
    rows = read_table(path)
    done = {row_key(row["target"], row["params"], row["seed"]) for row in rows}
    todo = [item for item in planned(space, targets, seeds) if row_key(*item) not in done]
    say(f"table {path}: {len(done)} lines kept, {len(todo)} to train")
    if not todo:
        return rows
    cache_dir = str(default_cache_dir())
    prepare_model(cache_dir, model)
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
                keep(train(space, *item, cache_dir, model))
        else:
            with concurrent.futures.ProcessPoolExecutor(jobs, initializer=_single_threaded) as pool:
                futures = [pool.submit(train, space, *item, cache_dir, model) for item in todo]
                for future in concurrent.futures.as_completed(futures):
                    keep(future.result())
    return rows


def main(argv: list[str] | None = None) -> None:
    from metaxl_tune.search.space.schema import load_space

    parser = argparse.ArgumentParser(description="Train the lines the tabular benchmark's table lacks, appending them.")
    parser.add_argument("--space", type=Path, default=DEFAULT_SPACE, help="The grid (all-categorical space).")
    parser.add_argument("--table", type=Path, default=DEFAULT_TABLE, help="The table's JSONL (appended to).")
    parser.add_argument("--targets", default="tk,qu")
    parser.add_argument("--seeds", default="1-2",
                        help="Training seeds every config should have: N (1 to N), A-B, or a comma list (1-4,7). "
                             "Only the missing (target, config, seed) lines are trained.")
    parser.add_argument("--jobs", type=int, default=1, help="Trainings at a time (one torch thread each).")
    parser.add_argument("--model", default=BASE["model"], help="The table's model (tests use tiny).")
    args = parser.parse_args(argv)
    try:
        seeds = parse_seeds(args.seeds)
    except ValueError as error:
        parser.exit(2, f"{error}\n")
    if args.jobs < 1:
        parser.exit(2, f"--jobs {args.jobs}: give 1 or more trainings at a time\n")
    from metaxl_tune.search.space.errors import SpaceError

    try:
        space = load_space(args.space)
    except SpaceError as error:
        parser.exit(2, f"--space: {error}\n")
    rows = build(space, args.table, args.targets.split(","), seeds, jobs=args.jobs, model=args.model)
    print(json.dumps({"lines": len(rows), "configs_by_seed_count": seed_counts(rows)}))


if __name__ == "__main__":
    main()
