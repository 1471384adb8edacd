"""Starting and stopping the servers and drivers tests need, by PID only (never `ray stop`)."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "metaxl_tune.cli"]
# The venv's `mlflow` script, or the module where a venv was made without entry points.
MLFLOW = ([str(Path(sys.executable).with_name("mlflow"))] if Path(sys.executable).with_name("mlflow").is_file()
          else [sys.executable, "-m", "mlflow"])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def session_pids(session_id: int) -> list[int]:
    """Processes in a session (a driver started with start_new_session and all it spawned)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session_id:
            pids.append(int(entry.name))
    return pids


def trial_worker_pids(driver_pid: int) -> list[int]:
    """The Ray worker processes below a driver that run a trial (Tune's ``ImplicitFunc`` actor).
    Searched among the driver's descendants, not its session: the local Ray's processes, and
    the workers the raylet starts, run in sessions of their own (search/cluster.py)."""
    pids = []
    for pid in descendants(driver_pid):
        try:
            if b"ImplicitFunc" in Path(f"/proc/{pid}/cmdline").read_bytes():
                pids.append(pid)
        except OSError:
            continue
    return pids


def process_start(pid: int) -> int | None:
    """The process's start time in clock ticks (tells a live pid from a reused one); None once gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else int(fields[19])


def descendants(root: int) -> dict[int, int]:
    """Every live process below ``root`` (pid -> start time), whatever session or group it is in."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = {}, list(children.get(root, []))
    while todo:
        pid = todo.pop()
        start = process_start(pid)
        if start is not None:
            found[pid] = start
        todo.extend(children.get(pid, []))
    return found


def kill_session(session_id: int, sig: int = signal.SIGKILL) -> None:
    for pid in session_pids(session_id):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def cli_env(cache_dir: Path) -> dict[str, str]:
    # METAXL_TUNE_RUNS=".": results straight in the working directory (./mlflow.db, ./metaxl-searches).
    env = {**os.environ, "METAXL_TUNE_CACHE": str(cache_dir), "PYTHONUNBUFFERED": "1", "METAXL_TUNE_RUNS": "."}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("RAY_ADDRESS", None)
    return env


def run_cli(args: list[str], *, cwd: Path, cache_dir: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, *args], cwd=cwd, env=cli_env(cache_dir), capture_output=True, text=True, timeout=timeout
    )


class MlflowServer:
    """`mlflow server` on 127.0.0.1, started lean and stopped by its session. Its store is
    ``directory/server.db``: a server started again on the same directory and port is the
    same tracking server back from an outage."""

    def __init__(self, directory: Path, port: int | None = None):
        self.directory = directory
        self.port = port or free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        self.process = subprocess.Popen(
            [*MLFLOW, "server", "--backend-store-uri",
             f"sqlite:///{directory / 'server.db'}", "--host", "127.0.0.1", "--port", str(self.port),
             "--workers", "1"],
            cwd=directory, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.uri + "/health", timeout=2).read()
                return
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError("mlflow server did not start within 120 s")

    def stop(self) -> None:
        kill_session(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            kill_session(self.process.pid)
            self.process.wait()


def tune_results(experiment_dir: Path) -> dict[str, list[dict]]:
    """Each trial's reported results, as Tune recorded them (trial id -> rows in order)."""
    import json

    results = {}
    for trial_dir in sorted(experiment_dir.glob("trial_*")):
        path = trial_dir / "result.json"
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
        results[trial_dir.name.removeprefix("trial_")] = rows
    return results


def wait_for(condition, *, timeout: float, what: str, interval: float = 0.2):
    """Poll until ``condition()`` returns something truthy, and return it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def read_until(process: subprocess.Popen, needle: str, timeout: float) -> str:
    """What ``process`` printed on stdout up to (at least) the first line holding ``needle``.
    Read from the pipe's descriptor, not its buffered file: what this returns is all that was
    taken from the pipe, so ``seen + process.stdout.read()`` (or ``communicate()``) is the
    whole output."""
    deadline = time.monotonic() + timeout
    seen = b""
    fd = process.stdout.fileno()
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 1.0)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            seen += chunk
            text = seen.decode(errors="replace")
            line_end = text.find("\n", text.find(needle)) if needle in text else -1
            if line_end >= 0:
                return text
    raise AssertionError(f"never printed {needle!r}; stdout so far: {seen.decode(errors='replace')!r}")


FIRST_RESULT = "[search] new best"
"""What a search driver prints as soon as it has taken a trial's first epoch result. Tune's
``result.json`` in the storage folder is no such signal: the driver may write it late."""
