"""A stop signal that finds Ray's own processes gone ends the driver from the watch's thread
(ray_loss.RayLossWatch): the records closed by ``end``, exit 128 + the signal, even while the
main thread is stuck; no signal, or Ray still there, or Ray being shut down by the driver
itself, and the watch does nothing. Signals are sent from outside the process."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from processes import read_until

DRIVER = r"""
import signal, sys, threading, time
from metaxl_tune.search.faults.ray_loss import RayLossWatch

mode = sys.argv[1]
gone = threading.Event()
heard = threading.Event()

def handler(signum, frame):
    # The driver's handler (interrupt.py) runs in the main thread; here it never returns, as a
    # main thread waiting in Ray's native code would not run it.
    heard.set()
    if mode == "stuck":
        time.sleep(600)

for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(sig, handler)

def end(signal_name, lost):
    print(f"closed the records after {signal_name}; {lost} ended too", flush=True)

watch = RayLossWatch(lambda: "the GCS server" if gone.is_set() else None, end, say=print).start()
if mode in ("lost-without-signal", "stuck"):
    gone.set()
print("running", flush=True)
if mode == "stuck":
    time.sleep(600)
if mode.startswith("lost-during-shutdown"):
    heard.wait(60)
    watch.shutting_down()
    gone.set()  # ray.shutdown ends Ray's processes itself
    if mode.endswith("stuck"):
        time.sleep(600)
time.sleep(1.5)  # several of the watch's looks
watch.stop()
print("ended by the driver", flush=True)
"""


def drive(mode: str, sig: signal.Signals | None = signal.SIGTERM) -> tuple[int, str]:
    process = subprocess.Popen([sys.executable, "-c", DRIVER, mode], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        seen = read_until(process, "running", timeout=60)
        if sig is not None:
            process.send_signal(sig)
        rest, _ = process.communicate(timeout=90)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode, (seen + rest).splitlines()[1:]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_stop_with_ray_gone_closes_the_records_and_exits_with_the_signal_while_the_main_thread_is_stuck(sig):
    returncode, lines = drive("stuck", sig)
    assert returncode == 128 + sig
    assert lines == [f"closed the records after {sig.name}; the GCS server ended too"]


def test_ray_gone_without_a_stop_signal_is_left_to_the_driver():
    assert drive("lost-without-signal", None) == (0, ["ended by the driver"])


def test_a_stop_with_ray_still_there_is_left_to_the_driver():
    assert drive("signalled", signal.SIGTERM) == (0, ["ended by the driver"])


def test_ray_ending_while_the_driver_shuts_it_down_is_not_a_loss():
    assert drive("lost-during-shutdown", signal.SIGTERM) == (0, ["ended by the driver"])


def test_a_shutdown_that_waits_for_a_lost_ray_is_ended_by_the_watch():
    returncode, lines = drive("lost-during-shutdown-stuck", signal.SIGTERM)
    assert returncode == 143 and lines == ["closed the records after SIGTERM; the GCS server ended too"]
