"""A search driver whose trials report chosen scores, for the racing tests (test_racing_search.py).

``python racing_driver.py PLAN FOLDER NAME ADDRESS [--resume]`` runs the real search (run_search: Ray
Tune, Optuna, MLflow, the race) with one substitution, the documented trial hook
(search/driver/hooks.py): a trial trains nothing and reports, epoch by epoch, the scores PLAN
gives the config it is (by the order configs first appear) and its repeat. So each racing
decision is known in advance, whatever the sampler proposes. Each trial leaves a marker
``started-<config>-<repeat>`` in FOLDER (a test acts on it), and the driver's last line is the
outcome as JSON.
"""

from __future__ import annotations

import fcntl
import json
import sys
import time
from pathlib import Path

from metaxl_tune.search.driver.hooks import SearchHooks
from metaxl_tune.search.driver.options import SearchOptions
from metaxl_tune.search.driver.runner import run_search

SPACE = """
metric: best_dev_f1
mode: max
fixed: {method: jt, epochs: EPOCHS, source_size: 160, target_size: 100, batch_size: 16, max_length: 32}
parameters:
  lr: {type: loguniform, low: 1.0e-5, high: 1.0e-2}
"""

# PLAN -> (search options, seconds per epoch, scores[config by first appearance][repeat] per epoch).
PLANS = {
    # Racing, one trial at a time: config 0 is the first incumbent; config 1 beats it on seed 0
    # and again on seed 1 (paired with config 0's runs), so it gets a third seed and becomes the
    # incumbent; configs 2 and 3 lose on their first seed and are dropped.
    "racing": (
        {"repeats": "auto", "max_repeats": 3, "scheduler": "fifo", "num_samples": 8},
        1.0,
        [[[48, 50], [49, 51], [47, 49]],
         [[58, 60], [59, 61], [57, 59]],
         [[38, 40]],
         [[43, 45]]],
    ),
    # Every config three times under ASHA (reduction factor 2, rung at epoch 1): config 0's
    # repeat 1 and config 1's repeat 2 score below their rung's median at epoch 1 and are pruned.
    "asha": (
        {"repeats": 3, "scheduler": "asha", "grace_period": 1, "num_samples": 6},
        0.0,
        [[[50, 52], [40, 41], [57, 58]],
         [[52, 53], [53, 54], [30, 31]]],
    ),
}
SEARCH_SEED = 7


def main(plan_name: str, folder: Path, name: str, address: str, resume: bool) -> None:
    options, seconds, scores = PLANS[plan_name]
    epochs = len(scores[0][0])

    def trial(sampled, *, configs, cache_dir, cpus, gpus, storage_retry_s):
        from ray import tune

        config = configs(sampled)
        with open(folder / "order.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            order_file = folder / "order.txt"
            order = order_file.read_text().split() if order_file.is_file() else []
            if sampled["config_id"] not in order:
                order.append(sampled["config_id"])
                order_file.write_text("\n".join(order))
            index = order.index(sampled["config_id"])
        (folder / f"started-{index}-{sampled['repeat']}").touch()
        for epoch, value in enumerate(scores[index][sampled["repeat"]], start=1):
            time.sleep(seconds)
            tune.report({"epoch": epoch, "epochs_total": config.epochs, "best_dev_f1": float(value),
                         "seed": config.seed})

    storage = str(folder / "metaxl-searches")
    if resume:
        search = SearchOptions.load(storage, name)
        search.address = address
    else:
        (folder / "space.yaml").write_text(SPACE.replace("EPOCHS", str(epochs)))
        search = SearchOptions(
            name=name, space=str(folder / "space.yaml"),
            base={"task": "ner", "target": "tk", "model": "tiny", "data": "synthetic"},
            max_concurrent=1, gpus_per_trial=0, address=address, storage=storage, seed=SEARCH_SEED,
            tracking_uri=f"sqlite:///{folder / 'mlflow.db'}", **options,
        )
    outcome = run_search(search, resume=resume, hooks=SearchHooks(trial=trial))
    print(json.dumps({"counts": outcome.counts, "best": outcome.best, "finished": outcome.finished,
                      "interrupted": outcome.interrupted}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[4], "--resume" in sys.argv[5:])
