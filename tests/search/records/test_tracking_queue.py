"""The tracking queue: calls in order, held while the store is unreachable, written once it is back."""

from __future__ import annotations

import threading
import time

from metaxl_tune.search.records.tracking_queue import TrackingQueue


class FlakyStore:
    """A stand-in tracking store that can be switched off; records the calls it accepted."""

    def __init__(self):
        self.up = True
        self.written: list[int] = []
        self.lock = threading.Lock()

    def write(self, value: int) -> None:
        if not self.up:
            raise ConnectionError("connection refused")
        with self.lock:
            self.written.append(value)


def make_queue(store: FlakyStore, messages: list[str]) -> TrackingQueue:
    return TrackingQueue("http://127.0.0.1:1", lambda: store.up, sync_hint="metaxl-tune sync --name x",
                         retry_seconds=0.05, say=messages.append)


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_calls_run_in_submission_order():
    store, messages = FlakyStore(), []
    queue = make_queue(store, messages)
    for value in range(50):
        queue.submit(lambda value=value: store.write(value))
    assert queue.close(offline_grace=5) == 0
    assert store.written == list(range(50)) and messages == []


def test_calls_are_held_while_the_store_is_down_and_written_in_order_when_it_is_back():
    store, messages = FlakyStore(), []
    queue = make_queue(store, messages)
    queue.submit(lambda: store.write(0))
    wait_until(lambda: store.written == [0])
    store.up = False
    for value in (1, 2, 3):
        queue.submit(lambda value=value: store.write(value))
    wait_until(lambda: any("unreachable" in message for message in messages))
    assert store.written == [0] and queue.pending == 3
    store.up = True
    assert queue.close(offline_grace=5) == 0
    assert store.written == [0, 1, 2, 3]
    assert "metaxl-tune sync --name x" in messages[0] and "reachable again" in messages[1]


def test_a_call_the_live_store_rejects_is_skipped_without_blocking_the_rest():
    store, messages = FlakyStore(), []
    queue = make_queue(store, messages)

    def rejected() -> None:
        raise ValueError("INVALID_PARAMETER_VALUE: metric value must be a number")

    queue.submit(rejected)
    queue.submit(lambda: store.write(1))
    assert queue.close(offline_grace=5) == 0
    assert store.written == [1] and queue.dropped == 1
    assert "rejected" in messages[0]


def test_closing_while_the_store_stays_down_reports_what_is_left_for_sync():
    store, messages = FlakyStore(), []
    store.up = False
    queue = make_queue(store, messages)
    queue.submit(lambda: store.write(1))
    queue.submit(lambda: store.write(2))
    assert queue.close(offline_grace=0.3) == 2
    assert "2 tracking updates were not written" in messages[-1] and "metaxl-tune sync --name x" in messages[-1]


def test_a_rejected_call_is_said_in_whole_words_naming_its_cause():
    # MLflow's own message is a paragraph whose cause comes last: cut at 200 characters, the
    # line used to end inside "HTTPConnectionPool(host='127.0.0.1', po".
    store, messages = FlakyStore(), []
    queue = make_queue(store, messages)

    def rejected() -> None:
        raise RuntimeError("API request to http://127.0.0.1:1/api/2.0/mlflow/runs/log-batch failed with exception "
                           "HTTPConnectionPool(host='127.0.0.1', port=1): Max retries exceeded with url: "
                           "/api/2.0/mlflow/runs/log-batch (Caused by ResponseError('too many 500 error responses'))")

    queue.submit(rejected)
    assert queue.close(offline_grace=5) == 0
    assert messages == ["warning: MLflow at http://127.0.0.1:1 rejected an update (HTTP 500); skipped"]
