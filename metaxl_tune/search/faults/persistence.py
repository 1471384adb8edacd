"""Checkpoint persistence that outlasts a transient storage fault.

``tune.report`` copies each epoch checkpoint into the trial's folder on the search storage
(shared storage on a cluster). A storage hiccup there (an NFS server failing over, a bucket
mount being remounted, a folder made read-only for a moment) raises ``OSError``; left alone it
becomes a trial error, and Tune's few retries (``max_failures``) are spent within seconds, each
restarting the trial from its last checkpoint only to hit the same fault again.

Here the report is retried with backoff for a window (``--storage-retry-s``, default 180 s).
The trial keeps its training state in memory while it waits, so once storage answers it goes
on from the checkpoint it was writing, no retry is counted, and its epochs stay in order. Only
a fault that outlasts the window fails the trial (and Tune's retries take over). The driver
cannot see the trial's wait (trial logs stay on their node), so it watches the running trials'
folders itself and prints one line per folder while one is not writable, and one when it is
back.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

from ray import tune

DEFAULT_RETRY_S = 180.0
"""How long a checkpoint write is retried before the trial fails (--storage-retry-s)."""
MAX_BACKOFF_S = 5.0
WATCH_EVERY_S = 2.0
"""How often the driver probes the running trials' folders."""
PROBE_NAME = ".metaxl-write-probe"


class StorageUnavailable(OSError):
    """Storage stayed unwritable for the whole retry window: the trial fails (and may be retried)."""


def backoff(attempt: int) -> float:
    """Seconds to wait before retry ``attempt`` (0-based): 0.5, 1, 2, 4, then every 5 s."""
    return min(MAX_BACKOFF_S, 0.5 * 2**attempt)


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:300]


class _SessionCounters:
    """Tune's per-report counters, put back when a report fails before its result was sent.

    ``tune.report`` counts the iteration and the checkpoint index *before* it copies the
    checkpoint; a failed copy would otherwise make the retried report skip an iteration (ASHA
    counts iterations) and a checkpoint index. Ray 2.60 keeps them on the train session.
    """

    def __init__(self) -> None:
        from ray.train._internal.session import get_session

        self.session = get_session()
        self.saved = self._read()

    def _read(self) -> tuple[Any, ...]:
        session = self.session
        if session is None:
            return ()
        return (session.iteration, session.time_total, session.last_report_time,
                session.storage.current_checkpoint_index)

    def restore(self) -> None:
        if self.session is None or not self.saved:
            return
        session = self.session
        (session.iteration, session.time_total, session.last_report_time,
         session.storage.current_checkpoint_index) = self.saved


def report(
    metrics: dict[str, Any],
    checkpoint_dir: Path | None,
    *,
    retry_s: float = DEFAULT_RETRY_S,
    say: Callable[[str], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """``tune.report`` with the checkpoint in ``checkpoint_dir``, retried while storage fails."""
    say = say or _say
    started: float | None = None
    attempt = 0
    while True:
        counters = _SessionCounters()
        checkpoint = tune.Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir is not None else None
        try:
            tune.report(metrics, checkpoint=checkpoint)
        except OSError as error:
            counters.restore()
            now = clock()
            if started is None:
                started = now
                say(f"storage: cannot write the checkpoint ({first_line(error)}); retrying for up to {retry_s:.0f} s")
            if now - started >= retry_s:
                raise StorageUnavailable(
                    f"storage stayed unwritable for {retry_s:.0f} s ({first_line(error)}); raise --storage-retry-s "
                    "or fix the storage, then resume the search"
                ) from error
            sleep(backoff(attempt))
            attempt += 1
            continue
        if started is not None:
            say(f"storage: checkpoint written after waiting {clock() - started:.0f} s; training goes on")
        return


def _say(message: str) -> None:
    # Reaches the trial's log on its node (the driver prints its own line, see StorageWatch).
    print(f"[trial] {message}", file=sys.stderr, flush=True)


def probe(folder: Path) -> OSError | None:
    """None if a folder can be created in ``folder`` now (what a checkpoint write does first)."""
    target = folder / f"{PROBE_NAME}-{os.getpid()}"
    try:
        target.mkdir(exist_ok=True)
        target.rmdir()
    except OSError as error:
        return error
    return None


class StorageWatch(tune.Callback):
    """Driver side: one line when a running trial's folder stops accepting writes, one when it
    accepts them again. Trials wait (see ``report``), so nothing else needs doing here."""

    def __init__(self, retry_s: float, *, say: Callable[[str], None] | None = None,
                 every_s: float = WATCH_EVERY_S, clock: Callable[[], float] = time.monotonic):
        self.retry_s = retry_s
        self.say = say
        self.every_s = every_s
        self.clock = clock
        self.failing: dict[str, float] = {}
        """Folder -> when it was first seen unwritable."""
        self._last = 0.0

    def __getstate__(self) -> dict[str, Any]:
        # Tune snapshots its callbacks; a function to print with does not travel.
        return {**self.__dict__, "say": None, "clock": time.monotonic, "failing": {}}

    def _print(self, message: str) -> None:
        (self.say or (lambda text: print(text, file=sys.stdout, flush=True)))(message)

    def check(self, folders: list[Path]) -> None:
        for folder in folders:
            key = str(folder)
            error = probe(folder) if folder.is_dir() else None
            if error is not None and key not in self.failing:
                self.failing[key] = self.clock()
                self._print(f"[storage] {folder} is not writable ({first_line(error)}); its trial waits up to "
                            f"{self.retry_s:.0f} s for it (--storage-retry-s) before it fails")
            elif error is None and key in self.failing:
                waited = self.clock() - self.failing.pop(key)
                self._print(f"[storage] {folder} is writable again after {waited:.0f} s")

    def on_step_end(self, iteration: int, trials: list, **info) -> None:
        now = self.clock()
        if now - self._last < self.every_s:
            return
        self._last = now
        running = [Path(trial.path) for trial in trials if trial.status == "RUNNING" and trial.path]
        self.check(running + [Path(key) for key in self.failing if Path(key) not in running])
