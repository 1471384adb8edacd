"""How far apart source and target representations are before any fine-tuning (paper §4.5).

For each model (`tiny`, random-init, and `tiny-pretrained`, MLM-pre-trained on the synthetic
languages) and task, the final-layer states of the target's train sample and of the source's
train sample are compared with `analysis.hausdorff` (cosine inner distance, paper Eq. 5-6);
the same distance between the target's train and dev samples is the within-language yardstick.
Prints one JSON line per (model, task).

    .venv/bin/python bench/pretrained_gap.py --target tk --source en
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from metaxl_tune.results.analysis import collect_representations, hausdorff
from metaxl_tune.config import RunConfig
from metaxl_tune.common.paths import default_cache_dir
from metaxl_tune.train.trainer import Run


def gap(model: str, task: str, target: str, source: str, limit: int) -> dict:
    config = RunConfig(model=model, data="synthetic", task=task, target=target, source=source, method="jt",
                       source_size=1000, max_length=64, seed=1)
    with tempfile.TemporaryDirectory() as directory:
        run = Run(config, Path(directory), cache_dir=default_cache_dir(), progress=True, save_model=False, log=print)
    states = {name: collect_representations(run, batcher, with_rtn=False, task=task, limit=limit)
              for name, batcher in (("target", run.data.target_train), ("source", run.data.source_train),
                                    ("target_dev", run.data.target_dev))}
    return {"model": model, "task": task, "target": target, "source": run.data.source_language,
            "hausdorff_source_target": round(hausdorff(states["source"], states["target"]), 4),
            "hausdorff_target_train_dev": round(hausdorff(states["target_dev"], states["target"]), 4),
            "n": {name: len(value) for name, value in states.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="tk")
    parser.add_argument("--source", default="en")
    parser.add_argument("--limit", type=int, default=1000, help="Most vectors per sample.")
    args = parser.parse_args()
    for model in ("tiny", "tiny-pretrained"):
        for task in ("ner", "sa"):
            started = time.monotonic()
            result = gap(model, task, args.target, args.source, args.limit)
            print(json.dumps({**result, "seconds": round(time.monotonic() - started, 1)}), flush=True)


if __name__ == "__main__":
    main()
