"""A retried trial whose newest checkpoint is damaged resumes from the previous kept one, or
starts again, with one line saying so. Runs the trainable in-process with Tune's calls faked."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import pytest
from ray import tune

import metaxl_tune.search.execution.trainable as trainable
from metaxl_tune.config import RunConfig
from metaxl_tune.train.trainer import Run
from test_checkpoint import DAMAGE

CONFIG = RunConfig(model="tiny", data="synthetic", task="ner", target="tk", source="related", method="metaxl",
                   epochs=2, lr=3e-3, meta_lr=1e-3, rtn_bottleneck=16, source_size=32, batch_size=16, max_length=32,
                   checkpoint_every="1")


@pytest.fixture(scope="module")
def kept(tmp_path_factory, shared_cache):
    """Two kept checkpoints of a 2-epoch trial, as Tune stores them (checkpoint_000000, _000001)."""
    storage = tmp_path_factory.mktemp("storage")

    def keep(entry, checkpoint):
        (checkpoint / trainable.PROGRESS_FILE).write_text(f'{{"wall_seconds": 1.0, "epoch": {entry.epoch}}}')
        shutil.copytree(checkpoint, storage / f"checkpoint_{entry.epoch - 1:06d}")

    Run(CONFIG, storage / "first-attempt", cache_dir=shared_cache, progress=False, save_model=False).fit(
        on_epoch=keep, checkpoint_dir=storage / "staging")
    return storage


def retry(monkeypatch, tmp_path, latest, shared_cache) -> list[dict]:
    reports = []
    fake = SimpleNamespace(
        get_context=lambda: SimpleNamespace(get_trial_dir=lambda: str(tmp_path / "trial")),
        get_checkpoint=lambda: tune.Checkpoint.from_directory(str(latest)),
        report=lambda metrics, checkpoint=None: reports.append(metrics),
        Checkpoint=tune.Checkpoint,
    )
    monkeypatch.setattr(trainable, "tune", fake)
    monkeypatch.setattr(trainable.persistence, "tune", fake)  # reports go through persistence.report
    trainable._train(CONFIG, {}, 0.0, cache_dir=str(shared_cache), cpus=1, gpus=0, storage_retry_s=0.0)
    return reports


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_one(kept, tmp_path, monkeypatch, capsys, shared_cache, damage):
    storage = tmp_path / "storage"
    shutil.copytree(kept, storage, ignore=shutil.ignore_patterns("first-attempt", "staging"))
    DAMAGE[damage](storage / "checkpoint_000001" / "state.pt")
    reports = retry(monkeypatch, tmp_path, storage / "checkpoint_000001", shared_cache)
    assert [(row["epoch"], row["resumed_from_epoch"]) for row in reports] == [(2, 1)]
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"[trial] checkpoint {storage / 'checkpoint_000001' / 'state.pt'} is unusable (")
    assert lines[0].endswith(f"the trial resumes from the previous kept checkpoint {storage / 'checkpoint_000000'}")


def test_without_an_earlier_checkpoint_the_trial_starts_again(kept, tmp_path, monkeypatch, capsys, shared_cache):
    storage = tmp_path / "storage"
    shutil.copytree(kept / "checkpoint_000001", storage / "checkpoint_000001")
    DAMAGE["random bytes"](storage / "checkpoint_000001" / "best.safetensors")
    reports = retry(monkeypatch, tmp_path, storage / "checkpoint_000001", shared_cache)
    assert [(row["epoch"], row["resumed_from_epoch"]) for row in reports] == [(1, 0), (2, 0)]
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"[trial] checkpoint {storage / 'checkpoint_000001' / 'best.safetensors'} is unusable (")
    assert lines[0].endswith("no earlier checkpoint is kept: the trial starts again from epoch 1")


def test_the_driver_hands_the_trial_to_tune_without_loading_the_trainer():
    # A search driver imports this module to hand train_trial to Tune, and warms the data
    # cache: neither needs the trainer nor the model classes (seconds of every search's
    # start); the trial's worker loads them when it trains.
    from processes import modules_loaded

    code = ("from metaxl_tune.search.execution.trainable import train_trial; "
            "from metaxl_tune.search.driver.preflight import warm_data_cache; from metaxl_tune.train.prepare import prepare_data")
    assert modules_loaded(code, ("metaxl_tune.train.trainer", "metaxl_tune.train.bilevel", "metaxl_tune.model.backbone",
                                 "transformers.models.xlm_roberta.modeling")) == []


def test_a_search_driver_loads_no_torch():
    # The driver's modules (the runner and its records, the trainable it hands to Tune, the data
    # warm-up) never make a tensor: torch would add about 2 s of CPU to every search's start.
    from processes import modules_loaded

    code = ("import metaxl_tune.search.driver.runner, metaxl_tune.search.records.callbacks; "
            "from metaxl_tune.search.execution.trainable import train_trial; "
            "from metaxl_tune.search.driver.preflight import warm_data_cache; from metaxl_tune.train.prepare import prepare_data")
    assert modules_loaded(code, ("torch",)) == []


def test_the_trials_worker_loads_neither_optuna_nor_mlflow():
    # What a trial's fresh worker imports before its first result: the trainable and the
    # trainer. Optuna and MLflow are the driver's (the pruner, the records): a second or two
    # of every search's first result if the worker loaded them.
    from processes import modules_loaded

    code = "from metaxl_tune.search.execution.trainable import train_trial; import metaxl_tune.train.trainer"
    assert modules_loaded(code, ("optuna", "mlflow")) == []
