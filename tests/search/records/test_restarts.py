"""restarts.py against a real MLflow store: a trial restarted from epoch 1 by a new driver
(``--resume``) logs each epoch once, and its time continues from what the run holds."""

from __future__ import annotations

import pytest

from metaxl_tune.search.records.restarts import SPENT_WALL_TAG, TrialLedger, log_result
from metaxl_tune.results.tracking import Tracker


def result(epoch: int, attempt: str, seconds: float, *, resumed_wall: float = 0.0) -> dict:
    # As trainable.py reports it on a CPU trial (one core held): wall_seconds counts the time
    # behind the checkpoint resumed from plus this attempt's own.
    wall = resumed_wall + seconds
    return {"epoch": epoch, "trial_started_at": attempt, "attempt_seconds": seconds, "wall_seconds": wall,
            "device_seconds": wall}


def log(tracker: Tracker, run_id: str, ledger: TrialLedger, row: dict) -> bool:
    return log_result(tracker, run_id, ledger, row, {"dev_f1": float(row["epoch"]), "wall_seconds": row["wall_seconds"],
                                                     "device_seconds": row["device_seconds"]}, {})


@pytest.fixture(scope="module")
def search(tmp_path_factory):
    """One store for the module (creating an MLflow database takes seconds)."""
    tracker = Tracker(f"sqlite:///{tmp_path_factory.mktemp('restarts') / 'mlflow.db'}", "restarted")
    return tracker, tracker.parent_run({})


@pytest.fixture
def trial_run(search, request):
    tracker, parent = search
    return tracker, tracker.trial_run(parent, request.node.name, {}, "")


def history(tracker: Tracker, run_id: str, key: str) -> list[tuple[int, float]]:
    metrics = sorted(tracker.client.get_metric_history(run_id, key), key=lambda metric: metric.timestamp)
    return [(metric.step, metric.value) for metric in metrics]


def test_a_new_driver_steps_past_the_logged_epochs_and_adds_the_lost_attempts_time(trial_run):
    tracker, run_id = trial_run
    first = TrialLedger.from_run(tracker.client, run_id)
    assert [log(tracker, run_id, first, result(epoch, "a", 10.0 * epoch)) for epoch in (1, 2)] == [True, True]
    # The driver stops before the trial's first checkpoint; the next one starts it again from epoch 1.
    again = TrialLedger.from_run(tracker.client, run_id)
    logged = [log(tracker, run_id, again, result(epoch, "b", 9.0 * epoch)) for epoch in (1, 2, 3)]
    assert logged == [False, False, True]
    assert [step for step, _ in history(tracker, run_id, "dev_f1")] == [1, 2, 3]
    assert history(tracker, run_id, "wall_seconds") == [(1, 10.0), (2, 20.0), (3, 20.0 + 27.0)]
    assert history(tracker, run_id, "device_seconds")[-1] == (3, 47.0)


def test_time_spent_on_redone_epochs_alone_is_kept_for_the_next_driver(trial_run):
    tracker, run_id = trial_run
    ledger = TrialLedger.from_run(tracker.client, run_id)
    for epoch in (1, 2):
        log(tracker, run_id, ledger, result(epoch, "a", 10.0 * epoch))
    # A second attempt redoes epoch 1 only (nothing new to log) and is lost as well.
    assert not log(tracker, run_id, TrialLedger.from_run(tracker.client, run_id), result(1, "b", 9.0))
    assert float(tracker.client.get_run(run_id).data.tags[SPENT_WALL_TAG]) == 29.0
    third = TrialLedger.from_run(tracker.client, run_id)
    for epoch in (1, 2, 3):
        log(tracker, run_id, third, result(epoch, "c", 9.0 * epoch))
    assert history(tracker, run_id, "wall_seconds")[-1] == (3, 29.0 + 27.0)


def test_a_restart_from_a_checkpoint_adds_only_the_work_past_it(trial_run):
    tracker, run_id = trial_run
    ledger = TrialLedger.from_run(tracker.client, run_id)
    for epoch in (1, 2, 3):
        log(tracker, run_id, ledger, result(epoch, "a", 10.0 * epoch))
    # Tune's retry in the same driver: the checkpoint of epoch 2 (20 s in) is restored.
    for epoch in (3, 4):
        log(tracker, run_id, ledger, result(epoch, "b", 10.0 * (epoch - 2), resumed_wall=20.0))
    # 30 s of the first attempt (10 of them lost past its checkpoint) and 20 s of the second.
    assert history(tracker, run_id, "wall_seconds") == [(1, 10.0), (2, 20.0), (3, 30.0), (4, 50.0)]
