"""Starting and stopping the servers and drivers tests need, by PID only (never `ray stop`)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
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
    the workers the raylet starts, run in sessions of their own (search/execution/cluster.py)."""
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


def supervised_driver(supervisor: int) -> int:
    """The Ray driver a ``search`` process runs as its one child (metaxl_tune/common/supervision.py)."""
    (child,) = map(int, Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split())
    return child


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


def cli_env(cache_dir: Path, ray: RayHead | None = None) -> dict[str, str]:
    """The environment of a CLI run; with ``ray``, what a driver needs to join that head."""
    # METAXL_TUNE_RUNS=".": results straight in the working directory (./mlflow.db, ./metaxl-searches).
    env = {**os.environ, "METAXL_TUNE_CACHE": str(cache_dir), "PYTHONUNBUFFERED": "1", "METAXL_TUNE_RUNS": "."}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("RAY_ADDRESS", None)
    if ray is not None:
        env.pop("RAY_AUTH_TOKEN_PATH", None)
        env.update(ray.auth_env)
    return env


def run_cli(args: list[str], *, cwd: Path, cache_dir: Path, timeout: float = 600,
            ray: RayHead | None = None) -> subprocess.CompletedProcess:
    """The real CLI in a subprocess. With ``ray`` (a search, ablate or best --rerun/--compare),
    the command joins that running head (``--address`` and its token) instead of starting a
    local Ray of its own."""
    command = [*CLI, *args, *(ray.flags if ray is not None else [])]
    return subprocess.run(command, cwd=cwd, env=cli_env(cache_dir, ray), capture_output=True, text=True,
                          timeout=timeout)


class RayHead:
    """A local Ray head (`ray start --head --block`) that searches join with ``--address``.

    Without ``--address`` every search starts a local Ray of its own (GCS, raylet, agents) and
    stops it again: seconds of CPU each, several times per test module. The test modules that
    do not test Ray's own start-up, signals or faults share this one head for the session
    (tests/conftest.py); those that do keep their own local Ray. The head runs in a session of
    its own, with ``env`` (the trial workers are its raylet's children and get their
    environment from it, not from the driver, as on a real cluster), declares ``num_cpus``
    CPUs and no GPU (a local Ray on the 2-core reference machine), and is stopped by PID. Drivers
    join it at 127.0.0.1; Ray's servers listen on every interface, so it keeps Ray's default
    token auth, with a token made for it that only the joining drivers get. Its temp folder is short and its own:
    Ray's socket paths must fit in 107 bytes, and ``ray start`` records its address there (a
    driver elsewhere on the machine asking for ``auto`` must not find it)."""

    def __init__(self, env: dict[str, str], *, num_cpus: int = 2):
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.flags = ["--address", self.address]
        self.auth_env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
        self.temp_dir = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
        self.log = self.temp_dir / "head.log"
        head_env = {key: value for key, value in env.items() if key not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH")}
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block", f"--port={self.port}",
                 "--node-ip-address=127.0.0.1", f"--num-cpus={num_cpus}", "--num-gpus=0",
                 "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={self.temp_dir}",
                 # Neither the log monitor (it tails every worker's log files to forward their
                 # lines to drivers, which join with log_to_driver=False) nor the autoscaler's
                 # monitor (a fixed cluster): for the whole session they cost about 45 s of CPU.
                 "--include-log-monitor=false", "--no-monitor"],
                # Its own folder as working directory: nothing a worker writes lands in the checkout.
                cwd=self.temp_dir, env={**head_env, **self.auth_env}, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_end_with_parent,
            )
        try:
            wait_for(self._started, timeout=300, what=f"the Ray head to start (its log: {self.log})")
        except BaseException:
            self.stop()
            raise

    def _started(self) -> bool:
        text = self.log.read_text(errors="replace")
        if self.process.poll() is not None:
            raise RuntimeError(f"ray start --head exited with status {self.process.returncode}:\n{text}")
        return "Ray runtime started" in text

    def stop(self) -> None:
        """SIGTERM to `ray start --block`, which stops the processes it started; then SIGKILL
        to whatever of its session is left."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass
        kill_session(self.process.pid)
        self.process.wait()
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def _end_with_parent() -> None:
    """In the child before exec: SIGTERM once the test process is gone (a killed pytest leaves no head)."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


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
        if not healthy(self.uri, self.process, timeout=120):
            self.stop()
            raise RuntimeError("mlflow server did not start within 120 s")

    def stop(self) -> None:
        stop_server(self.process)


def healthy(uri: str, process: subprocess.Popen, *, timeout: float) -> bool:
    """Whether the server at ``uri`` answers /health within ``timeout`` s (False once its process
    has exited: it will not)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            urllib.request.urlopen(uri + "/health", timeout=2).read()
            return True
        except OSError:
            time.sleep(0.5)
    return False


def stop_server(process: subprocess.Popen) -> None:
    """SIGTERM to the server's session (it may write its last records), SIGKILL after 20 s."""
    kill_session(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        kill_session(process.pid)
        process.wait()


@contextlib.contextmanager
def mounted_tmpfs(mount_point: Path, size: str):
    """A tmpfs of ``size`` (mount's syntax: 1m) at ``mount_point``, unmounted at the end: a disk
    that fills up for real. Needs root (CI runs as root); anything else is a failure, not a skip."""
    mount_point.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)],
                             capture_output=True, text=True)
    assert mounted.returncode == 0, f"cannot mount a tmpfs at {mount_point}: {mounted.stderr.strip()}"
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


def fill(folder: Path, leave: int) -> Path:
    """A ballast file that leaves ``leave`` bytes free on ``folder``'s file system; its path."""
    import shutil

    ballast = folder / "ballast"
    ballast.write_bytes(b"\0" * (shutil.disk_usage(folder).free - leave))
    return ballast


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


def running_search_space(epochs: int) -> str:
    """A one-parameter MetaXL search space (tiny sizes) whose trials last ``epochs`` epochs, so
    that a test acting once a first epoch is reported (a signal, a second driver) finds them
    still running."""
    return f"""
metric: best_dev_f1
mode: max
fixed: {{method: metaxl, epochs: {epochs}, lr: 3.0e-3, source_size: 160, target_size: 100, batch_size: 16,
        max_length: 32, rtn_bottleneck: 8}}
parameters:
  meta_lr: {{type: loguniform, low: 1.0e-5, high: 1.0e-2}}
"""


def modules_loaded(code: str, prefixes: tuple[str, ...]) -> list[str]:
    """The modules named by ``prefixes`` that a fresh interpreter has loaded after running
    ``code`` (what a command's start costs, seen from outside the test process)."""
    probe = f"{code}\nimport sys\nprint('\\n'.join(sorted(m for m in sys.modules if m.startswith({prefixes!r}))))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return done.stdout.split()
