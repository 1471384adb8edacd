"""MLflow tags of a retried trial: placement and resumed_from_epoch after every retry, even on the
same node; a resumed search reopens its trials' runs once."""

from __future__ import annotations

import pickle
from types import SimpleNamespace

from metaxl_tune.search.records.callbacks import MlflowTrialCallback


class NewRunClient:
    """What restarts.TrialLedger reads of a run: a new run holds no metrics and no tags."""

    def get_run(self, run_id):
        return SimpleNamespace(data=SimpleNamespace(metrics={}, tags={}))

    def get_metric_history(self, run_id, key):
        return []


class FakeTracker:
    """Records the calls MlflowTrialCallback makes (the real Tracker talks to MLflow)."""

    tracking_uri = "fake://"

    def __init__(self):
        self.calls = []
        self.client = NewRunClient()

    def reachable(self) -> bool:
        return True

    def trial_run(self, parent_id, trial_id, params, tags):
        self.calls.append(("trial_run", trial_id))
        return f"run-{trial_id}"

    def log_config(self, run_id, config_yaml):
        self.calls.append(("log_config", run_id))

    def log_metrics(self, run_id, metrics, step, tags=None):
        self.calls.append(("log_metrics", step, dict(tags or {})))

    def set_tags(self, run_id, tags):
        self.calls.append(("set_tags", dict(tags)))


class Config:
    method = "metaxl"
    model_artifacts = True

    def to_dict(self):
        return {}

    def to_yaml(self):
        return ""


def to_config(trial_config: dict) -> Config:
    return Config()


def result(epoch: int, resumed_from: int, node: str = "node-a") -> dict:
    return {"epoch": epoch, "dev_f1": 1.0, "node_id": node, "resumed_from_epoch": resumed_from}


def test_placement_tags_follow_every_retry_even_on_the_same_node():
    tracker = FakeTracker()
    callback = MlflowTrialCallback(tracker, "parent", to_config, sync_hint="sync")
    trial = SimpleNamespace(trial_id="t1", config={}, run_metadata=SimpleNamespace(num_failures=0))
    callback.on_trial_result(0, [], trial, result(1, 0))
    callback.on_trial_result(0, [], trial, result(2, 0))
    trial.run_metadata.num_failures = 1
    callback.on_trial_recover(0, [], trial)
    callback.on_trial_result(0, [], trial, result(3, 2))
    trial.run_metadata.num_failures = 2
    callback.on_trial_recover(0, [], trial)
    callback.on_trial_result(0, [], trial, result(3, 2))
    callback.on_trial_result(0, [], trial, result(4, 3))
    callback.on_experiment_end([])
    logged = [(call[1], call[2].get("metaxl.resumed_from_epoch")) for call in tracker.calls if call[0] == "log_metrics"]
    # Epoch 3, redone after the second retry, is logged once (restarts.py).
    assert logged == [(1, "0"), (2, None), (3, "2"), (4, "3")]
    assert [call[1] for call in tracker.calls if call[0] == "set_tags"] == [
        {"metaxl.retries": "1"}, {"metaxl.retries": "2"}]


def test_a_restored_callback_finds_each_run_again_once():
    tracker = FakeTracker()
    callback = MlflowTrialCallback(tracker, "parent", to_config, sync_hint="sync")
    trial = SimpleNamespace(trial_id="t1", config={}, run_metadata=SimpleNamespace(num_failures=0))
    callback.on_trial_result(0, [], trial, result(1, 0))
    callback.on_experiment_end([])
    restored = pickle.loads(pickle.dumps(callback))
    restored.tracker = tracker
    restored.on_trial_result(0, [], trial, result(2, 1))
    restored.on_trial_result(0, [], trial, result(3, 1))
    restored.on_experiment_end([])
    assert [call for call in tracker.calls if call[0] == "trial_run"] == [("trial_run", "t1")] * 2
