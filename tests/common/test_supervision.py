"""A driver run under its supervisor (metaxl_tune/common/supervision.py), with a stand-in driver
(supervised_stand_in.py) in real processes and signals sent from outside, as a terminal, a
scheduler or the OOM killer sends them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

STAND_IN = Path(__file__).with_name("supervised_stand_in.py")


def start(mode: str, folder: Path) -> tuple[subprocess.Popen, int]:
    """The supervisor in a process group of its own (as a shell starts a job), and its child's pid
    once the child is ready."""
    process = subprocess.Popen([sys.executable, str(STAND_IN), "supervise", mode, str(folder)],
                               stdout=subprocess.PIPE, text=True, start_new_session=True)
    line = process.stdout.readline()
    assert line.startswith("ready "), line
    return process, int(line.split()[1])


def heard(folder: Path) -> list[str]:
    path = folder / "heard"
    return path.read_text().split() if path.exists() else []


def closed(folder: Path) -> list[dict]:
    path = folder / "closed"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def finish(process: subprocess.Popen) -> tuple[int, str]:
    rest, _ = process.communicate(timeout=30)
    return process.returncode, rest


def test_a_signal_to_the_supervisor_alone_reaches_the_driver_once(tmp_path):
    process, _ = start("count", tmp_path)
    os.kill(process.pid, signal.SIGTERM)
    returncode, _ = finish(process)
    assert heard(tmp_path) == ["SIGTERM"] and returncode == 0


def test_a_signal_to_the_whole_group_reaches_the_driver_once(tmp_path):
    process, _ = start("count", tmp_path)
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C in a terminal
    returncode, _ = finish(process)
    assert heard(tmp_path) == ["SIGINT"] and returncode == 0


def test_a_signal_to_every_process_reaches_the_driver_once(tmp_path):
    process, child = start("count", tmp_path)
    os.kill(child, signal.SIGHUP)
    os.kill(process.pid, signal.SIGHUP)
    finish(process)
    assert heard(tmp_path) == ["SIGHUP"]


@pytest.mark.parametrize("status", [0, 3])
def test_the_drivers_exit_status_is_the_supervisors(tmp_path, status):
    process = subprocess.run([sys.executable, str(STAND_IN), "supervise", f"status-{status}", str(tmp_path)],
                             capture_output=True, text=True, timeout=30)
    assert process.returncode == status and not closed(tmp_path)


def test_a_driver_ended_by_a_signal_ends_the_supervisor_by_it(tmp_path):
    process, _ = start("default-term", tmp_path)
    os.killpg(process.pid, signal.SIGTERM)
    returncode, _ = finish(process)
    assert returncode == -signal.SIGTERM and not closed(tmp_path)


def test_records_a_driver_left_open_are_closed_once_and_the_stop_signal_decides_the_status(tmp_path):
    # Ray's order: the driver ends at once (its raylet went first), the job's SIGTERM reaches
    # the supervisor 0.3 s later.
    process, child = start("open-die", tmp_path)
    (tmp_path / "die").touch()
    time.sleep(0.3)
    os.kill(process.pid, signal.SIGTERM)
    returncode, said = finish(process)
    assert returncode == 143 and said.strip().splitlines()[-1] == "stopped: SIGTERM"
    assert closed(tmp_path) == [{"name": "stand-in", "pid": child}]


def test_records_of_a_killed_driver_are_closed_with_status_137(tmp_path):
    process, child = start("open", tmp_path)
    os.kill(child, signal.SIGKILL)  # the OOM killer
    returncode, said = finish(process)
    assert returncode == 137 and said.strip().splitlines()[-1] == "stopped: SIGKILL of its driver"
    assert len(closed(tmp_path)) == 1


def test_records_of_a_driver_that_ended_without_a_signal_are_closed_and_its_status_kept(tmp_path):
    process = subprocess.run([sys.executable, str(STAND_IN), "supervise", "open-exit", str(tmp_path)],
                             capture_output=True, text=True, timeout=30)
    assert process.returncode == 1 and process.stdout.strip() == "stopped: its driver ended with status 1"
    assert len(closed(tmp_path)) == 1


def test_records_the_driver_closed_itself_are_not_closed_again(tmp_path):
    process = subprocess.run([sys.executable, str(STAND_IN), "supervise", "open-close", str(tmp_path)],
                             capture_output=True, text=True, timeout=30)
    assert process.returncode == 0 and not closed(tmp_path) and not process.stdout.strip()


def test_the_driver_is_stopped_when_its_supervisor_is_killed(tmp_path):
    process, child = start("count", tmp_path)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    deadline = time.monotonic() + 10
    while not heard(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert heard(tmp_path) == ["SIGTERM"]
    while time.monotonic() < deadline:  # the stand-in ends 3 s after it heard the signal
        try:
            if Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                break  # ended, not yet reaped by whoever adopted it
        except OSError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the orphaned driver kept running")
