"""Artifact uploads that never change a record: a store that does not take a file is said once, on
one whole line naming the cause; a server that is away is left to the tracking queue."""

from __future__ import annotations

import errno
import re

import pytest

from metaxl_tune.results.tracking import Tracker
from metaxl_tune.search.faults.fault_lines import error_summary
from metaxl_tune.search.records.artifacts import ArtifactUploads, upload_cause
from processes import fill, mounted_tmpfs

# What MLflow's HTTP client raises when the server's artifact store fails a write (measured
# against `mlflow server` 3.x with a full tmpfs store: a bare 500, or the retried upload's reset).
POOL = ("API request to http://127.0.0.1:5931/api/2.0/mlflow-artifacts/artifacts/1/39b96bc1fa18415cb15928857b8b6e26"
        "/artifacts/best/best.safetensors failed with exception HTTPConnectionPool(host='127.0.0.1', port=5931): "
        "Max retries exceeded with url: /api/2.0/mlflow-artifacts/artifacts/1/39b96bc1fa18415cb15928857b8b6e26/"
        "artifacts/best/best.safetensors (Caused by {cause})")
SERVER_500 = POOL.format(cause="ResponseError('too many 500 error responses'))")
RESET = POOL.format(cause="ProtocolError('Connection aborted.', ConnectionResetError(104, 'Connection reset by peer')))")
REFUSED = POOL.format(cause="NewConnectionError('<urllib3.connection.HTTPConnection object at 0x7f>: Failed to "
                            "establish a new connection: [Errno 111] Connection refused'))")


def test_an_mlflow_http_error_is_summed_up_in_whole_words():
    assert error_summary(Exception(SERVER_500)) == "HTTP 500"
    assert error_summary(Exception(RESET)) == "the server closed the connection during the request"
    assert error_summary(Exception(REFUSED)) == "connection refused"
    long = Exception("INVALID_PARAMETER_VALUE: " + " ".join(f"word{index}" for index in range(100)))
    summary = error_summary(long)
    assert len(summary) <= 160 and summary.endswith(" ...")
    assert all(re.fullmatch(r"word\d+", word) for word in summary.split()[1:-1])


def test_a_server_that_fails_the_write_is_taken_for_a_full_or_unwritable_store():
    said = ("no space left on the artifact store, or the store is not writable")
    assert upload_cause(Exception(SERVER_500)) == f"the server could not write it (HTTP 500): {said}"
    assert upload_cause(Exception(RESET)) == f"the server could not write it (it closed the connection mid-upload): {said}"
    assert upload_cause(Exception("API request to X failed with error code 413 != 200")).endswith("accepts (HTTP 413)")


class Tracked:
    def __init__(self, up: bool):
        self.tracking_uri, self.search_name, self.up = "http://127.0.0.1:1", "s", up

    def reachable(self) -> bool:
        return self.up


def test_an_upload_that_fails_while_the_server_is_away_is_raised_for_the_queue_to_hold():
    uploads = ArtifactUploads(Tracked(up=False), kept_in="/s", sync_hint="sync", say=pytest.fail)

    def upload():
        raise ConnectionError(REFUSED)

    with pytest.raises(ConnectionError):
        uploads.upload("the best weights of trial t1", 10, upload)
    assert uploads.failed == 0


@pytest.fixture
def full_local_store(tmp_path):
    """An embedded sqlite store whose artifact folder (metaxl-runs/mlartifacts beside the
    database, tracking.py) is a full tmpfs."""
    with mounted_tmpfs(tmp_path / "mlartifacts", "256k") as store:
        fill(store, 0)
        yield Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "s")


def test_a_full_local_store_is_said_once_naming_no_space_and_the_run_goes_on(full_local_store, tmp_path):
    tracker = full_local_store
    run_id = tracker.parent_run({})
    weights = tmp_path / "best.safetensors"
    weights.write_bytes(b"w" * 64 * 1024)
    said, shared = [], set()
    first = ArtifactUploads(tracker, kept_in=tmp_path, sync_hint="metaxl-tune sync --name s", say=said.append, said=shared)
    again = ArtifactUploads(tracker, kept_in=tmp_path, sync_hint="metaxl-tune sync --name s", say=said.append, said=shared)
    assert first.upload("the best weights of trial t1", 64 * 1024, lambda: tracker.client.log_artifact(run_id, str(weights), "best")) is False
    assert again.upload("the config.yaml of trial t2", 700, lambda: tracker.log_config(run_id, "a: 1\n" * 2000)) is False
    assert said == [
        f"warning: MLflow at {tracker.tracking_uri} did not store the best weights of trial t1 (64.0 KiB): no space "
        f"left on the artifact store; outcomes and metrics are recorded all the same, and the files it did not take "
        f"stay in {tmp_path}: make room, then run `metaxl-tune sync --name s` to upload them"]
    tracker.end_run(run_id, "FINISHED")
    assert tracker.client.get_run(run_id).info.status == "FINISHED"


def no_space() -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def test_each_sync_says_its_own_line():
    said = []
    for _ in range(2):
        uploads = ArtifactUploads(Tracked(up=True), kept_in="/s", sync_hint="sync", say=said.append)
        assert uploads.upload("x", 1, no_space) is False and uploads.failed == 1
    assert len(said) == 2 and all("no space left on the artifact store" in line for line in said)
