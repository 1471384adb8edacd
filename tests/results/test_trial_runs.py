"""A trial's MLflow run, found again when the trial runs again (a resumed search), on a real
sqlite store."""

from __future__ import annotations

from metaxl_tune.results.tracking import SEARCH_TAG, TRIAL_TAG, Tracker


def test_a_trial_run_left_without_params_gets_them_when_its_trial_runs_again(tmp_path):
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "resumed")
    parent = tracker.parent_run({})
    # What a driver killed between MLflow's two calls leaves: the run, tagged, without params.
    left = tracker.client.create_run(tracker.experiment_id, tags={SEARCH_TAG: "resumed", TRIAL_TAG: "t1",
                                                                  "metaxl.role": "trial"}).info.run_id
    again = tracker.trial_run(parent, "t1", {"meta_lr": 3e-05, "rtn_bottleneck": 192})
    assert again == left
    assert tracker.client.get_run(left).data.params == {"meta_lr": "3e-05", "rtn_bottleneck": "192"}


def test_a_trial_run_with_its_params_is_found_again_unchanged(tmp_path):
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "resumed")
    parent = tracker.parent_run({})
    first = tracker.trial_run(parent, "t1", {"meta_lr": 3e-05})
    assert tracker.trial_run(parent, "t1", {"meta_lr": 3e-05}) == first
    assert tracker.client.get_run(first).data.params == {"meta_lr": "3e-05"}
