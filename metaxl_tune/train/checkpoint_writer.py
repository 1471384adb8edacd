"""Checkpoint writes off the training thread: one background thread runs write jobs in order.

The trainer serialises a checkpoint to bytes on its own thread (checkpoint.serialize_state,
serialize_best) and submits the job that moves them to disk; training goes on meanwhile.
"""

from __future__ import annotations

import threading
from typing import Callable


class CheckpointWriter:
    """One background thread that runs write jobs in submission order.

    The caller serialises on its own thread first (``serialize_state``/``serialize_best``), so
    a job only moves bytes to disk. ``wait`` blocks until every job so far is done and re-raises
    the first error (a full disk must not pass silently); ``check`` re-raises it without waiting,
    so the training loop stops as soon as a write has failed. After a failed job the jobs queued
    behind it are dropped: a checkpoint written after a failed best-weights write would pair
    new state with old weights.
    """

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._jobs: list[Callable[[], None]] = []
        self._condition = threading.Condition()
        self._error: BaseException | None = None
        self._busy = False

    def submit(self, job: Callable[[], None]) -> None:
        with self._condition:
            if self._error is not None:
                return  # dropped: an earlier write failed, and wait()/check() will say so
            self._jobs.append(job)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="checkpoint-writer", daemon=True)
                self._thread.start()
            self._condition.notify_all()

    def _loop(self) -> None:
        while True:
            with self._condition:
                while not self._jobs:
                    self._condition.wait()
                job = self._jobs.pop(0)
                self._busy = True
            try:
                job()
            except BaseException as error:  # noqa: BLE001 - handed to the training thread in wait()
                with self._condition:
                    self._error = self._error or error
                    self._jobs.clear()
            finally:
                with self._condition:
                    self._busy = False
                    self._condition.notify_all()

    def check(self) -> None:
        """Re-raise the error of a failed job, if any, without waiting for the others."""
        with self._condition:
            error, self._error = self._error, None
        if error is not None:
            raise error

    def wait(self) -> None:
        with self._condition:
            while self._jobs or self._busy:
                self._condition.wait()
        self.check()
