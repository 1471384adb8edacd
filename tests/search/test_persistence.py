"""Checkpoint reports wait out a storage fault (retried with backoff) instead of failing the trial."""

from __future__ import annotations

import os
import subprocess

import pytest

from metaxl_tune.search import persistence


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
