"""What a supervisor closes when Ray ended its driver with the records open
(metaxl_tune/search/driver/supervised_ending.py), here for an ablation, on a real sqlite store.
The search's case runs end to end in tests/search/faults/test_group_signal.py (the job kill)."""

from __future__ import annotations

import json
import os
import socket

from metaxl_tune.results.tracking import OUTCOME_TAG, Tracker
from metaxl_tune.search.driver.ablate import AblationOptions
from metaxl_tune.search.driver.lock import lock_path
from metaxl_tune.search.driver.supervised_ending import SupervisedEnding

NAME = "left-open"


def left_open_ablation(tmp_path, holder_pid: int) -> tuple[dict, Tracker]:
    """An ablation's records as a driver that Ray ended leaves them: options saved, the parent and
    a trial run RUNNING, the lock file naming the supervisor."""
    storage = tmp_path / "searches"
    AblationOptions(name=NAME, storage=str(storage)).save()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, NAME)
    parent = tracker.parent_run({"metaxl.kind": "ablation"})
    tracker.trial_run(parent, "t1", {"method": "metaxl"})
    lock_path(storage, NAME).write_text(json.dumps({"host": socket.gethostname(), "pid": holder_pid}) + "\n")
    opened = {"command": "ablate", "storage": str(storage), "name": NAME, "tracking_uri": None,
              "resolved_tracking_uri": uri}
    return opened, tracker


def test_an_ablation_left_open_is_closed_and_its_lock_removed(tmp_path, capsys):
    opened, tracker = left_open_ablation(tmp_path, os.getpid())
    ending = SupervisedEnding()
    ending.close(opened)
    ending.say_stopped(opened, "SIGTERM")
    (trial,) = tracker.trial_runs()
    assert (trial.info.status, trial.data.tags[OUTCOME_TAG]) == ("KILLED", "interrupted")
    parent = tracker.client.get_run(tracker.parent_run({}, reopen=False))
    assert parent.info.status == "KILLED"
    assert not lock_path(opened["storage"], NAME).exists()
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith(f"ablation {NAME} interrupted (SIGTERM; its driver ended at once")
    assert line.endswith(f"Resume with: metaxl-tune ablate --name {NAME} --resume --storage {opened['storage']}")


def test_a_lock_that_names_another_process_is_left_alone(tmp_path):
    opened, _ = left_open_ablation(tmp_path, os.getpid() + 100000)
    SupervisedEnding().close(opened)
    assert lock_path(opened["storage"], NAME).exists()
