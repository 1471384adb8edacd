"""Does the synthetic benchmark separate the methods? Target-only, JT, JT w/ RTN and MetaXL on
``tiny-pretrained``, English and the related source, over several seeds: one JSON line with
each (source, method)'s mean and std of dev F1 and test F1 (test at the best dev epoch).

The demo's comparison (`make demo`: 3 seeds, 3 methods, one source) at a larger budget. The
MetaXL settings are the demo space's fixed values plus a middle-of-the-range RTN, or a config
exported by `metaxl-tune best -o` (``--config``: its method-independent fields are kept for every
method, as in `best --compare`). Runs one after another in this process (no Ray, no MLflow).

    .venv/bin/python bench/transfer.py                       # 5 seeds x 4 methods x 2 sources
    .venv/bin/python bench/transfer.py --config metaxl-runs/configs/demo-...-best.yaml --seeds 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from metaxl_tune.config import RunConfig, load_config
from metaxl_tune.trainer import Run, default_cache_dir

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
    args = parser.parse_args()
    base = load_config(args.config) if args.config else RunConfig(**DEFAULT)
    if args.epochs is not None:
        base = base.replace(epochs=args.epochs)
    started = time.monotonic()
    results: dict[str, dict] = {}
    for source in args.sources.split(","):
        for method in args.methods.split(","):
            dev, test = [], []
            for seed in range(1, args.seeds + 1):
                scores = train(base.replace(source=source, method=method, seed=seed))
                dev.append(scores[0])
                test.append(scores[1])
            results[f"{source}/{method}"] = {"dev_f1": spread(dev), "test_f1": spread(test)}
            # Progress on stderr, so a long run that is stopped still shows what it measured.
            print(f"{source}/{method}: {json.dumps(results[f'{source}/{method}'])} "
                  f"({time.monotonic() - started:.0f} s)", file=sys.stderr, flush=True)
    print(json.dumps({
        "bench": "transfer", "model": base.model, "task": base.task, "target": base.target, "epochs": base.epochs,
        "source_size": base.source_size, "seeds": args.seeds, "results": results,
        "seconds": round(time.monotonic() - started, 1),
    }))


if __name__ == "__main__":
    main()
