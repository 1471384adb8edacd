"""Best-dev weights of a trial: the kept file and the MLflow artifact are the best epoch's, written
only when dev improves, uploaded once when the trial ends, and not at all with --no-model-artifacts."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from mlflow.tracking import MlflowClient
from ray import tune

import metaxl_tune.train.trainer as trainer
from metaxl_tune.train.checkpoint import BEST_FILE, load_best, load_checkpoint
from metaxl_tune.config import RunConfig
from metaxl_tune.search.records.callbacks import MlflowTrialCallback
from metaxl_tune.results.tracking import BEST_ARTIFACT_DIR, Tracker
from metaxl_tune.train.trainer import Run

CONFIG = RunConfig(model="tiny", data="synthetic", task="ner", target="tk", source="related", method="metaxl",
                   epochs=4, lr=3e-3, meta_lr=1e-3, rtn_bottleneck=16, source_size=32, batch_size=16, max_length=32,
                   checkpoint_every="2")


@pytest.fixture(scope="module")
def peaked(tmp_path_factory, shared_cache):
    """A 4-epoch trial whose dev F1 peaks at epoch 2: dev F1 is the real one at epoch 2 and -1
    at the other epochs (so the peak is deterministic whatever the tiny model learns)."""
    directory = tmp_path_factory.mktemp("peaked")
    run = Run(CONFIG, directory / "run", cache_dir=shared_cache, progress=False, save_model=False)
    real_evaluate, dev_calls, best_writes = run.evaluate, [], []

    def evaluate(batcher):
        if batcher is not run.data.target_dev:
            return real_evaluate(batcher)
        dev_calls.append(1)
        return real_evaluate(batcher) if len(dev_calls) == 2 else -1.0

    def counting_save_best(path, data):
        best_writes.append(load_best.__name__)
        return real_save_best(path, data)

    run.evaluate = evaluate
    real_save_best = trainer.save_best
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trainer, "save_best", counting_save_best)
        result = run.fit(checkpoint_dir=directory / "checkpoint")
    return SimpleNamespace(run=run, result=result, directory=directory, best_writes=len(best_writes))


def test_the_kept_weights_are_the_best_epochs_and_reproduce_its_dev_f1(peaked, shared_cache):
    assert [entry.best_epoch for entry in peaked.result.history] == [1, 2, 2, 2]
    theta, phi, metadata = load_best(peaked.directory / "checkpoint" / BEST_FILE)
    assert metadata["epoch"] == 2 and load_checkpoint(peaked.directory / "checkpoint")["epoch"] == 4
    fresh = Run(CONFIG, peaked.directory / "fresh", cache_dir=shared_cache, progress=False, save_model=False)
    fresh.model.load_state_dict(theta)
    fresh.rtn.load_state_dict(phi)
    assert fresh.evaluate(fresh.data.target_dev) == peaked.result.best.best_dev_f1 == metadata["dev_f1"]


def test_best_weights_are_written_only_when_dev_improves(peaked):
    assert peaked.best_writes == 2  # epochs 1 and 2


def finished_trial(peaked, **changes) -> SimpleNamespace:
    config = CONFIG.model_copy(update=changes)
    results = [{**entry.metrics(), "epochs_total": 4} for entry in peaked.result.history]
    return SimpleNamespace(
        trial_id="t1", config=config.to_dict(), last_result=results[-1], results=results,
        checkpoint=tune.Checkpoint.from_directory(str(peaked.directory / "checkpoint")),
    )


class CountingTracker(Tracker):
    uploads = 0

    def log_best_weights(self, run_id: str, checkpoint_dir: Path) -> bool:
        type(self).uploads += 1
        return super().log_best_weights(run_id, checkpoint_dir)


def track(tmp_path, trial) -> tuple[MlflowClient, str]:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = CountingTracker(uri, "s")
    CountingTracker.uploads = 0
    callback = MlflowTrialCallback(tracker, tracker.parent_run({}), lambda values: RunConfig(**values), sync_hint="")
    callback.on_trial_start(0, [], trial)
    for result in trial.results:
        callback.on_trial_result(0, [], trial, result)
    callback.on_trial_complete(0, [], trial)
    callback.on_experiment_end([])
    return MlflowClient(uri), callback.runs["t1"]


def test_the_mlflow_artifact_is_the_best_epochs_uploaded_once(peaked, tmp_path):
    client, run_id = track(tmp_path, finished_trial(peaked))
    assert CountingTracker.uploads == 1
    assert [item.path for item in client.list_artifacts(run_id, BEST_ARTIFACT_DIR)] == [f"{BEST_ARTIFACT_DIR}/{BEST_FILE}"]
    downloaded = client.download_artifacts(run_id, f"{BEST_ARTIFACT_DIR}/{BEST_FILE}", str(tmp_path))
    assert load_best(Path(downloaded))[2]["epoch"] == 2


def test_no_model_artifacts_uploads_none(peaked, tmp_path):
    client, run_id = track(tmp_path, finished_trial(peaked, model_artifacts=False))
    assert CountingTracker.uploads == 0 and client.list_artifacts(run_id, BEST_ARTIFACT_DIR) == []
    assert client.get_run(run_id).info.status == "FINISHED"
