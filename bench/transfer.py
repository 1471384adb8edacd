"""Does the synthetic benchmark separate the methods? Target-only, JT, JT w/ RTN and MetaXL on
``tiny-pretrained``, English and the related source, over several seeds: one JSON line with
each (source, method)'s mean and std of dev F1 and test F1 (test at the best dev epoch).

The demo's comparison (`make demo`: 3 seeds, 3 methods, one source) at a larger budget. The
MetaXL settings are the demo space's fixed values plus a middle-of-the-range RTN, or a config
exported by `metaxl-tune best -o` (``--config``: its method-independent fields are kept for every
method, as in `best --compare`). Runs one after another in this process (no Ray, no MLflow).

    .venv/bin/python bench/transfer.py                       # 5 seeds x 4 methods x 2 sources
    .venv/bin/python bench/transfer.py --config metaxl-runs/configs/demo-...-best.yaml --seeds 3
    .venv/bin/python bench/transfer.py --seeds 3 --jobs 2    # two runs at a time, one thread each

Target-only reads no source data, so it is trained once per seed and its row is shown under every
source. With ``--jobs N`` the runs go to N worker processes with one torch thread each: on a
small model one thread per run keeps a core busier than two threads on one run (the scores are
the same runs', up to the float rounding of another thread count).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from metaxl_tune.config import RunConfig, load_config
from metaxl_tune.common.paths import default_cache_dir
from metaxl_tune.train.trainer import Run

METHODS = ("target-only", "jt", "jt-rtn", "metaxl")
SOURCES = ("en", "related")
# The demo space's fixed values (search_spaces/demo.yaml) with more source data and epochs.
DEFAULT = dict(model="tiny-pretrained", data="synthetic", task="ner", target="tk", epochs=5, lr=3e-3,
               source_size=1000, target_size=100, batch_size=16, max_length=64,
               rtn_layers=["last"], rtn_bottleneck=16, meta_lr=1e-3)


def train(config: RunConfig) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as directory:
        run = Run(config, Path(directory), cache_dir=default_cache_dir(), progress=False, save_model=False)
        best = run.fit().best
    return best.best_dev_f1, best.best_test_f1


def _single_threaded() -> None:
    import torch

    torch.set_num_threads(1)


def spread(values: list[float]) -> dict[str, float]:
    return {"mean": round(statistics.fmean(values), 2),
            "std": round(statistics.stdev(values), 2) if len(values) > 1 else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, help="A config exported by `metaxl-tune best -o` (default: see DEFAULT).")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, help="Override the config's epochs.")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--sources", default=",".join(SOURCES))
    parser.add_argument("--jobs", type=int, default=1, help="Runs at a time, each in its own process with one thread.")
    args = parser.parse_args()
    base = load_config(args.config) if args.config else RunConfig(**DEFAULT)
    if args.epochs is not None:
        base = base.replace(epochs=args.epochs)
    started = time.monotonic()
    sources, methods = args.sources.split(","), args.methods.split(",")
    seeds = range(1, args.seeds + 1)
    # (row source, method) -> the run each seed needs; target-only's runs are one set for all sources.
    runs = {(source, method): [("-" if method == "target-only" else source, method, seed) for seed in seeds]
            for source in sources for method in methods}
    unique = list(dict.fromkeys(key for keys in runs.values() for key in keys))
    scores: dict[tuple, tuple[float, float]] = {}
    results: dict[str, dict] = {}

    def configure(source: str, method: str, seed: int) -> RunConfig:
        return base.replace(method=method, seed=seed, **({} if source == "-" else {"source": source}))

    def report_finished_rows() -> None:
        # Progress on stderr as each row completes, so a stopped run still shows what it measured.
        for (source, method), keys in runs.items():
            row = f"{source}/{method}"
            if row not in results and all(key in scores for key in keys):
                dev, test = [scores[key][0] for key in keys], [scores[key][1] for key in keys]
                results[row] = {"dev_f1": spread(dev), "test_f1": spread(test)}
                print(f"{row}: {json.dumps(results[row])} ({time.monotonic() - started:.0f} s)",
                      file=sys.stderr, flush=True)

    if args.jobs == 1:
        for key in unique:
            scores[key] = train(configure(*key))
            report_finished_rows()
    else:
        with concurrent.futures.ProcessPoolExecutor(args.jobs, initializer=_single_threaded) as pool:
            futures = {pool.submit(train, configure(*key)): key for key in unique}
            for future in concurrent.futures.as_completed(futures):
                scores[futures[future]] = future.result()
                report_finished_rows()
    results = {f"{source}/{method}": results[f"{source}/{method}"] for source, method in runs}
    print(json.dumps({
        "bench": "transfer", "model": base.model, "task": base.task, "target": base.target, "epochs": base.epochs,
        "source_size": base.source_size, "seeds": args.seeds, "jobs": args.jobs, "results": results,
        "seconds": round(time.monotonic() - started, 1),
    }))


if __name__ == "__main__":
    main()
