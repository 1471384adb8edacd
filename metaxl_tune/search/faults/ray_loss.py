"""A stop that finds Ray's own processes gone: the driver ends the search without them.

Slurm at a job's time limit (with cgroup process tracking), and other managers that stop a job
process by process, send SIGTERM to every process of the job in no fixed order: the driver, and
the local Ray's GCS server, raylet, agents and workers (their own sessions do not shield them
from that: search/execution/cluster.py). Tune's graceful stop (interrupt.py) and ``ray.shutdown``
then wait for a GCS server that is gone, until Ray's core worker ends the driver after 60 s with
exit status 1 and a line of its own ("Failed to connect to GCS within 60 seconds"), leaving the
MLflow runs and Optuna trials RUNNING and the lock file behind.

``RayLossWatch`` runs on a thread of its own from the moment the driver is connected to Ray
until it has shut Ray down. It hears the stop signals through ``signal.set_wakeup_fd``, not
through Python's handlers: those run only while the main thread runs Python, and it may be
waiting in Ray's native code. Once a stop signal has arrived and Ray's GCS server or raylet is
gone (``lost``, which the driver gives: cluster.ray_loss_check), nothing more can be saved
through Ray. The watch then does what the driver does after Tune's loop: ``end`` closes the
records as after any stop (ending.py: Optuna trials FAIL ``interrupted``, MLflow runs KILLED
``interrupted``; the resume continues from Tune's last periodic snapshot of the experiment, as
after a killed driver), releases the lock and says how to resume. The process then ends at once
(``os._exit``) with 128 + the signal's number, without unwinding through Ray, which would wait.

While the driver shuts Ray down itself (``shutting_down``), Ray's processes end by design: the
watch steps in then only if ``ray.shutdown`` has not returned ``SHUTDOWN_WAIT_S`` later.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import sys
import threading
import time
from typing import Callable

from metaxl_tune.common.stop_signals import STOP_SIGNALS, exit_status

POLL_S = 0.25
"""How often the watch looks at Ray's processes once a stop signal has arrived."""
SHUTDOWN_WAIT_S = 15.0
"""How long ``ray.shutdown`` may take before a lost Ray counts as lost rather than stopping."""
_STOP_NUMBERS = {int(sig): sig.name for sig in STOP_SIGNALS}


class RayLossWatch:
    """Started once the driver is connected (``start``, from the main thread); told when the
    driver shuts Ray down (``shutting_down``) and when it is done with Ray (``stop``).

    ``end(signal_name, lost)`` closes the search's records and says the resume line; it runs on
    the watch's thread while the main thread may still be inside Tune, and the process ends
    right after it."""

    def __init__(self, lost: Callable[[], str | None], end: Callable[[str, str], None], *,
                 say: Callable[[str], None]):
        self._lost = lost
        self._end = end
        self._say = say
        self._guard = threading.Lock()
        self._signal: str | None = None
        self._shutdown_since: float | None = None
        self._done = False
        self._ending = False
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)
        self._previous_wakeup = -1
        self._thread = threading.Thread(target=self._watch, name="metaxl-ray-loss-watch", daemon=True)

    def start(self) -> "RayLossWatch":
        # Python writes each handled signal's number here from its C-level handler, at once.
        self._previous_wakeup = signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        self._thread.start()
        return self

    def shutting_down(self) -> None:
        with self._guard:
            self._shutdown_since = time.monotonic()

    def stop(self) -> None:
        """The driver is done with Ray and ends the search itself; if the watch is ending it
        already, wait for the end of the process instead."""
        with self._guard:
            self._done = True
            ending = self._ending
        while ending:
            time.sleep(60)  # the watch's thread ends the process
        signal.set_wakeup_fd(self._previous_wakeup)
        self._thread.join(timeout=5 * POLL_S)
        self._reader.close()
        self._writer.close()

    def _heard(self) -> None:
        try:
            numbers = self._reader.recv(256)
        except (BlockingIOError, OSError):
            return
        if self._previous_wakeup >= 0:
            # The descriptor this watch took over (a supervisor's, common/supervision.py) still
            # hears every signal, so that it does not pass on one this process already got.
            try:
                os.write(self._previous_wakeup, numbers)
            except OSError:
                pass
        for number in numbers:
            if self._signal is None and number in _STOP_NUMBERS:
                self._signal = _STOP_NUMBERS[number]

    def _watch(self) -> None:
        while True:
            try:
                ready, _, _ = select.select([self._reader], [], [], POLL_S)
            except (OSError, ValueError):
                return  # closed by stop()
            if ready:
                self._heard()
            with self._guard:
                if self._done:
                    return
                shutting_since = self._shutdown_since
            if self._signal is None:
                continue
            if shutting_since is not None and time.monotonic() - shutting_since < SHUTDOWN_WAIT_S:
                continue
            lost = self._lost()
            if lost is None:
                continue
            with self._guard:
                if self._done:
                    return
                self._ending = True
            self._end_without_ray(self._signal, lost)

    def _end_without_ray(self, signal_name: str, lost: str) -> None:
        try:
            self._end(signal_name, lost)
        except BaseException as error:  # noqa: BLE001 - the process ends below whatever happened
            self._say(f"warning: {signal_name} with {lost} gone: could not close the records "
                      f"({type(error).__name__}: {str(error).splitlines()[0][:200] if str(error) else ''})")
        finally:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except (OSError, ValueError):
                    pass
            os._exit(exit_status(signal_name))
