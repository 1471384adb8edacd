"""MLflow calls of a search, run in order on one background thread.

Tune's control loop must neither wait on the tracking server (every millisecond there is a
millisecond all trials wait at their next report) nor stop when it goes away. Calls are
queued; while the server is unreachable they are held, retried every few seconds and
written once it answers again. A call the server rejects while it is up (a bad value) is
dropped with a warning instead of blocking the calls behind it. Anything still queued when
the search ends is recoverable: ``metaxl-tune sync`` rewrites it from Tune's results.
"""

from __future__ import annotations

import collections
import sys
import threading
import time
from typing import Callable

from metaxl_tune.search.faults.fault_lines import error_summary
from metaxl_tune.common.secrets import mask_text, mask_uri

RETRY_SECONDS = 5.0
"""How often a held queue tries the tracking server again."""


def say_tracking(message: str) -> None:
    """A line about the tracking server, on stderr (the progress lines are on stdout)."""
    print(f"[tracking] {message}", file=sys.stderr, flush=True)


class TrackingQueue:
    def __init__(
        self,
        uri: str,
        reachable: Callable[[], bool],
        *,
        sync_hint: str,
        retry_seconds: float = RETRY_SECONDS,
        say: Callable[[str], None] = say_tracking,
    ):
        self.uri = mask_uri(uri)
        """Masked: the queue only names it."""
        self.reachable = reachable
        self.sync_hint = sync_hint
        self.retry_seconds = retry_seconds
        self.say = say
        self._pending: collections.deque[Callable[[], object]] = collections.deque()
        self._condition = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None
        self.offline_since: float | None = None
        self.dropped = 0

    def submit(self, action: Callable[[], object]) -> None:
        with self._condition:
            self._pending.append(action)
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="metaxl-tracking", daemon=True)
                self._thread.start()
            self._condition.notify()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def _work(self) -> None:
        while True:
            with self._condition:
                while not self._pending and not self._closing:
                    self._condition.wait()
                if not self._pending:
                    return
                action = self._pending[0]
            try:
                action()
            except Exception as error:  # noqa: BLE001 - MLflow raises many unrelated types
                if self._held(error):
                    with self._condition:
                        self._condition.wait(self.retry_seconds)
                    continue
            with self._condition:
                self._pending.popleft()
            if self.offline_since is not None:
                self.say(f"MLflow at {self.uri} is reachable again after {time.monotonic() - self.offline_since:.0f} s; "
                         f"writing the {self.pending + 1} held updates")
                self.offline_since = None

    def _held(self, error: Exception) -> bool:
        """True: keep the call and retry later (server down). False: drop it (server up, call bad)."""
        reason = mask_text(error_summary(error))
        if self.offline_since is not None or not self.reachable():
            if self.offline_since is None:
                self.offline_since = time.monotonic()
                self.say(f"warning: MLflow at {self.uri} is unreachable ({reason}); training continues, "
                         f"updates are held and written when it is back (or later: {self.sync_hint})")
            return True
        self.dropped += 1
        self.say(f"warning: MLflow at {self.uri} rejected an update ({reason}); skipped")
        return False

    def close(self, *, offline_grace: float) -> int:
        """Write what is queued. Gives up once the server has been unreachable for
        ``offline_grace`` seconds; returns how many updates were left unwritten."""
        with self._condition:
            self._closing = True
            self._condition.notify()
        thread = self._thread
        while thread is not None and thread.is_alive():
            thread.join(timeout=0.5)
            if self.offline_since is not None and time.monotonic() - self.offline_since >= offline_grace:
                break
        left = self.pending
        if left:
            self.say(f"warning: {left} tracking updates were not written (MLflow at {self.uri} is unreachable); "
                     f"nothing is lost: {self.sync_hint} once it is back")
        return left
