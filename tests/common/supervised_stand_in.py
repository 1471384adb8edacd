"""A stand-in for a supervised driver (tests/common/test_supervision.py): the supervisor side
runs ``supervise`` as ``search`` does, the child side behaves as MODE says.

    python supervised_stand_in.py supervise MODE FOLDER
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

from metaxl_tune.common.supervision import report_signals, supervise, tell_closed, tell_opened


class FileEnding:
    """Writes what it closes into FOLDER/closed, one line each time."""

    def __init__(self, folder: Path):
        self.folder = folder

    def close(self, opened: dict) -> None:
        with open(self.folder / "closed", "a") as file:
            file.write(json.dumps(opened) + "\n")

    def say_stopped(self, opened: dict, reason: str) -> None:
        print(f"stopped: {reason}", flush=True)


def child(mode: str, folder: Path) -> None:
    report_signals()
    heard = folder / "heard"

    def note(signum, frame):
        with open(heard, "a") as file:
            file.write(signal.Signals(signum).name + "\n")

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, note)
    if mode.startswith("open"):
        tell_opened({"name": "stand-in", "pid": os.getpid()})
    if mode == "open-close":
        tell_closed()
        sys.exit(0)
    if mode == "open-exit":
        os._exit(1)  # as Ray's core worker ends a driver: no Python, no atexit
    if mode.startswith("status-"):
        sys.exit(int(mode.removeprefix("status-")))
    if mode == "default-term":
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    print(f"ready {os.getpid()}", flush=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if mode == "open-die" and (folder / "die").exists():
            os._exit(1)
        if mode == "count" and heard.exists():
            time.sleep(3)  # longer than a late pass-on would take to arrive
            sys.exit(0)
        time.sleep(0.02)
    sys.exit(9)


if __name__ == "__main__":
    role, mode, folder = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    if role == "supervise":
        sys.exit(supervise([sys.executable, __file__, "child", mode, str(folder)], FileEnding(folder)))
    child(mode, folder)
