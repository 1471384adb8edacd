"""Checkpoint reports wait out a storage fault (retried with backoff) instead of failing the trial."""

from __future__ import annotations

import os
import subprocess

import pytest

from metaxl_tune.search.faults import persistence


class Clock:
    def __init__(self):
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def failing_report(failures: int, calls: list):
    def report(metrics, checkpoint=None):
        calls.append((dict(metrics), checkpoint.path if checkpoint is not None else None))
        if len(calls) <= failures:
            raise PermissionError(1, "Operation not permitted", "/storage/trial_x/checkpoint_000002")
    return report


def test_a_report_is_retried_with_backoff_until_storage_answers(monkeypatch, tmp_path):
    calls, said, clock = [], [], Clock()
    monkeypatch.setattr(persistence.tune, "report", failing_report(5, calls))
    persistence.report({"epoch": 2}, tmp_path, retry_s=60, say=said.append, sleep=clock.sleep, clock=clock)
    assert len(calls) == 6 and all(call == ({"epoch": 2}, str(tmp_path)) for call in calls)
    assert clock.sleeps == [0.5, 1.0, 2.0, 4.0, 5.0]
    assert said[0].startswith("storage: cannot write the checkpoint ([Errno 1] Operation not permitted")
    assert "retrying for up to 60 s" in said[0]
    assert said[1] == "storage: checkpoint written after waiting 12 s; training goes on"


def test_a_fault_longer_than_the_window_fails_the_report(monkeypatch, tmp_path):
    calls, clock = [], Clock()
    monkeypatch.setattr(persistence.tune, "report", failing_report(1000, calls))
    with pytest.raises(persistence.StorageUnavailable, match="storage stayed unwritable for 20 s"):
        persistence.report({"epoch": 1}, tmp_path, retry_s=20, say=lambda _: None, sleep=clock.sleep, clock=clock)
    assert 20 <= clock.now < 26 and len(calls) == len(clock.sleeps) + 1


def test_errors_other_than_storage_errors_are_not_retried(monkeypatch, tmp_path):
    def report(metrics, checkpoint=None):
        raise ValueError("bad metric")

    monkeypatch.setattr(persistence.tune, "report", report)
    with pytest.raises(ValueError, match="bad metric"):
        persistence.report({"epoch": 1}, tmp_path, retry_s=60, say=lambda _: None, sleep=lambda _: None)


def immutable(path) -> bool:
    """Make ``path`` immutable (root, ext4/xfs); False where chattr is not available."""
    if os.geteuid() != 0:
        return False
    return subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0


def test_the_driver_prints_one_line_while_a_folder_is_unwritable_and_one_when_it_is_back(tmp_path):
    folder = tmp_path / "trial_a"
    folder.mkdir()
    if not immutable(folder):
        pytest.skip("needs root and chattr (an ext4/xfs folder) to make a folder unwritable")
    said, clock = [], Clock()
    watch = persistence.StorageWatch(180, say=said.append, clock=clock)
    try:
        watch.check([folder])
        clock.now = 7.0
        watch.check([folder])
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    clock.now = 21.0
    watch.check([folder])
    watch.check([folder])
    assert said == [
        f"[storage] {folder} is not writable ([Errno 1] Operation not permitted: '{folder}/"
        f"{persistence.PROBE_NAME}-{os.getpid()}'); its trial waits up to 180 s for it (--storage-retry-s) before it fails",
        f"[storage] {folder} is writable again after 21 s",
    ]
    assert list(folder.iterdir()) == []


# ---- end to end: a trial's folder made immutable for 20 s mid-search ----------------------------

SPACE = """
metric: best_dev_f1
mode: max
fixed: {method: jt, epochs: 4, lr: 3.0e-3, source_size: 300, target_size: 100, max_length: 32,
        checkpoint_every: "1"}
parameters:
  batch_size: {type: categorical, values: [16]}
"""
# Every epoch writes a checkpoint into the storage (checkpoint_every 1), so the fault hits one.
FAULT_SECONDS = 20


@pytest.fixture(scope="module")
def storage_fault(tmp_path_factory, shared_cache, ray_head):
    import time

    from processes import CLI, FIRST_RESULT, cli_env, kill_session, read_until, tune_results

    workdir = tmp_path_factory.mktemp("storage-fault")
    probe_dir = workdir / "probe"
    probe_dir.mkdir()
    if not immutable(probe_dir):
        pytest.skip("needs root and chattr (an ext4/xfs folder) to make the trial folder unwritable")
    subprocess.run(["chattr", "-i", str(probe_dir)], check=True)
    (workdir / "space.yaml").write_text(SPACE)
    experiment_dir = workdir / "metaxl-searches" / "fault"
    driver = subprocess.Popen(
        [*CLI, "search", "--task", "ner", "--target", "tk", "--model", "tiny", "--data", "synthetic",
         "--space", "space.yaml", "--name", "fault", "--num-samples", "1", "--scheduler", "fifo", *ray_head.flags],
        cwd=workdir, env=cli_env(shared_cache, ray_head), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )
    trial_dir = None
    try:
        before = read_until(driver, FIRST_RESULT, timeout=300)
        trial_dir = next(experiment_dir.glob("trial_*"))
        assert immutable(trial_dir)
        time.sleep(FAULT_SECONDS)
        subprocess.run(["chattr", "-i", str(trial_dir)], check=True)
        rest, _ = driver.communicate(timeout=300)
        output = before + rest
    finally:
        if trial_dir is not None:
            subprocess.run(["chattr", "-i", str(trial_dir)])
        kill_session(driver.pid)
        driver.wait()
    return workdir, trial_dir, driver.returncode, output, tune_results(experiment_dir)


def test_a_trial_waits_out_unwritable_storage_and_finishes_every_epoch_once(storage_fault):
    _, trial_dir, returncode, output, results = storage_fault
    assert returncode == 0, output
    (rows,) = results.values()
    assert [row["epoch"] for row in rows] == [1, 2, 3, 4]
    assert [row["training_iteration"] for row in rows] == [1, 2, 3, 4]
    # The report during the fault waited (the trial was not restarted): no epoch was resumed.
    assert all(row["resumed_from_epoch"] == 0 and row["iterations_since_restore"] == row["training_iteration"]
               for row in rows)
    assert max(row["time_this_iter_s"] for row in rows) >= FAULT_SECONDS - 5
    assert sorted(path.name for path in trial_dir.glob("checkpoint_*")) == ["checkpoint_000003"]


def test_the_driver_names_the_folder_and_the_error_once_and_no_ray_traceback(storage_fault):
    _, trial_dir, _, output, _ = storage_fault
    waiting = [line for line in output.splitlines() if line.startswith("[storage]")]
    assert len(waiting) == 2, output
    assert waiting[0].startswith(f"[storage] {trial_dir} is not writable ([Errno 1] Operation not permitted")
    assert waiting[1].startswith(f"[storage] {trial_dir} is writable again after ")
    assert "Traceback" not in output and "1 completed, 0 pruned, 0 failed" in output
    # Nothing else of Ray's or MLflow's: no coloured paragraph, no "🏃 View run" line.
    assert "\x1b[" not in output and "\N{RUNNER}" not in output, output


def test_the_trial_keeps_its_retry_count_in_mlflow_and_optuna(storage_fault):
    import optuna
    from mlflow.tracking import MlflowClient

    from metaxl_tune.search.driver.options import optuna_storage

    workdir, _, _, _, _ = storage_fault
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("metaxl-tune")
    (run,) = client.search_runs([experiment.experiment_id], "tags.`metaxl.role` = 'trial'")
    assert run.info.status == "FINISHED" and "metaxl.retries" not in run.data.tags
    assert run.data.tags["metaxl.resumed_from_epoch"] == "0"
    study = optuna.load_study(study_name="fault", storage=optuna_storage(workdir / "metaxl-searches" / "fault"))
    assert [trial.state for trial in study.trials] == [optuna.trial.TrialState.COMPLETE]
