"""Connecting to Ray: a local instance by default, or a running cluster by address.

An address that does not answer fails in seconds with a message, instead of Ray's long
retry loop; the local instance binds its dashboard to 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import ray

LOCAL = "local"


class ClusterError(ValueError):
    """Ray cannot be reached; the message says what to change."""


def probe(address: str, *, timeout: float = 3.0, named: str = "--address") -> None:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(f"{named} {address}: expected HOST:PORT (e.g. 10.0.0.5:6379), 'auto' or 'local'")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as error:
        raise ClusterError(
            f"cannot reach a Ray head at {address} ({error.strerror or error}); start one with "
            f"`ray start --head --port {port}` there, or {'unset' if named.startswith('$') else 'drop'} {named} "
            "to run on a local Ray"
        ) from None


def resolve_address(address: str | None) -> str:
    return address or os.environ.get("RAY_ADDRESS") or LOCAL


def check_address(address: str, *, named: str = "--address") -> None:
    """Cheap reachability check, done before any data or model work; ``named``: what supplied
    the address (the flag, or $RAY_ADDRESS), named in the error."""
    if address not in (LOCAL, "auto"):
        probe(address.removeprefix("ray://"), named=named)


def connect(address: str) -> None:
    if ray.is_initialized():
        return
    if address == LOCAL:
        # Without address="local", ray.init joins the cluster that a `ray start --head` on this
        # machine last recorded in /tmp/ray, even one that has since been killed.
        _started.clear()
        with ray_processes_in_their_own_session():
            ray.init(address=LOCAL, include_dashboard=False, configure_logging=False, log_to_driver=False)
        return
    with _stderr_captured() as captured:
        try:
            ray.init(address=address, log_to_driver=False)
            return
        except ray.exceptions.AuthenticationError:
            # RAY_AUTH_MODE=token is set here, but no token was found to send.
            refusal = "this driver has no token"
        except ConnectionError as error:
            if not any(sign in captured.read_text(errors="replace") for sign in AUTH_FAILURE_SIGNS):
                raise ClusterError(f"cannot join the Ray cluster at {address}: {str(error).splitlines()[0]}") from None
            refusal = "its token auth refused this driver"
    raise ClusterError(
        f"the Ray cluster at {address}: {refusal}; set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN "
        f"(or RAY_AUTH_TOKEN_PATH, or ~/.ray/auth_token) to the cluster's token "
        f"(`ray get-auth-token` on the head prints it)"
    )


@contextlib.contextmanager
def ray_processes_in_their_own_session() -> Iterator[None]:
    """Start the local Ray's processes (GCS server, raylet and its agents, log monitor) in a new
    session, outside the driver's process group.

    ``timeout``, Slurm's pgid tracking and other batch systems stop a job by sending SIGTERM to
    its whole process group. Ray's processes would otherwise get it at the same moment as the
    driver and die at once (SIGINT they block; SIGTERM they do not), and the driver, asking Tune
    for its graceful stop, would wait 60 s for a GCS that is gone and exit 1, leaving its runs
    RUNNING. In their own session only the driver gets the signal: it stops the search as after
    a SIGTERM to its pid alone (interrupt.py) and then stops them in ``ray.shutdown``. They stay
    the driver's children, so Ray's kernel fate sharing (PR_SET_PDEATHSIG) still ends them if
    the driver is killed outright. The raylet already starts each worker in a process group of
    its own. Ray has no option for this: every process goes through ``services.start_ray_process``,
    which builds a ``ConsolePopen`` (a plain ``subprocess.Popen`` off Windows), so ray.init runs
    with that class swapped for one that asks for a new session, and the class is put back."""
    from ray._private import services

    original = services.ConsolePopen

    class SessionPopen(original):
        def __init__(self, *args, **kwargs):
            if sys.platform != "win32":
                kwargs["start_new_session"] = True
            super().__init__(*args, **kwargs)
            command = args[0] if args else kwargs.get("args")
            if isinstance(command, (list, tuple)) and command:
                _started.append((Path(str(command[0])).name, self.pid))

    services.ConsolePopen = SessionPopen
    try:
        yield
    finally:
        services.ConsolePopen = original


_started: list[tuple[str, int]] = []
"""(executable name, pid) of each process the local Ray of this driver started (ray.init)."""
LIFELINES = {"gcs_server": "GCS server", "raylet": "raylet"}
"""Ray's own processes without which nothing of a search can be asked of Ray, not even to stop."""


def ray_loss_check(address: str) -> Callable[[], str | None]:
    """A check, cheap and safe from any thread, that names the one of Ray's own processes this
    driver has lost (None while they run): the local Ray's GCS server or raylet, found by pid,
    or a GCS server that refuses connections. Asking Ray itself would wait for the lost process
    (search/faults/ray_loss.py). A GCS server sent SIGTERM closes its port within a second but
    may live on for many more while its raylet waits for workers; one slow to answer is not lost."""
    # Only those running now: a Ray this driver started and has since shut down left its entries.
    own = [(LIFELINES[name], pid) for name, pid in _started if name in LIFELINES and _running(pid)]
    where = "the local Ray's" if address == LOCAL else "the cluster's"
    gcs = ray.get_runtime_context().gcs_address
    host, _, port = gcs.rpartition(":")

    def lost() -> str | None:
        for name, pid in own:
            if not _running(pid):
                return f"{where} {name} (pid {pid})"
        try:
            with socket.create_connection((host, int(port)), timeout=2.0):
                return None
        except ConnectionRefusedError:
            return f"{where} GCS server ({gcs})"
        except OSError:
            return None

    return lost


def native_log_path() -> Path:
    """Where the driver's native Ray lines go while it runs Ray (quiet_output.NativeLines): the
    session's log folder, beside the logs of the GCS server and raylet."""
    node = ray._private.worker._global_node
    folder = Path(node.get_logs_dir_path()) if node is not None else Path(tempfile.gettempdir())
    return folder / f"metaxl-driver-{os.getpid()}.err"


def _running(pid: int) -> bool:
    """Alive and not a zombie (one that ended, not yet reaped by its parent, the driver)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return state not in ("Z", "X")


# What Ray's C++ client logs while a head with token auth turns a driver away.
AUTH_FAILURE_SIGNS = ("InvalidAuthToken", "Unauthenticated")


@contextlib.contextmanager
def _stderr_captured() -> Iterator[Path]:
    """Send file descriptor 2 to a temporary file while joining a cluster: Ray's C++ client
    logs a warning per second while it retries, and a refused token shows only there."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryDirectory(prefix="metaxl-ray-connect-") as folder:
        log = Path(folder) / "stderr.log"
        with log.open("wb") as sink:
            os.dup2(sink.fileno(), 2)
            try:
                yield log
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                os.close(saved)


def describe(address: str) -> str:
    """One line on what the search runs on, printed once Ray is up."""
    nodes = sum(1 for node in ray.nodes() if node["Alive"])
    resources = ray.cluster_resources()
    where = "a local Ray" if address == LOCAL else f"the Ray cluster at {address}"
    return (f"running on {where}: {nodes} node{'s' * (nodes != 1)}, "
            f"{resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs")


def cluster_gpus() -> float:
    return float(ray.cluster_resources().get("GPU", 0))


def cluster_slots(*, cpus_per_trial: float, gpus_per_trial: float) -> int:
    """How many trials of this size the cluster holds at once (at least one)."""
    resources = ray.cluster_resources()
    by_cpu = int(resources.get("CPU", 0) // cpus_per_trial) if cpus_per_trial > 0 else None
    by_gpu = int(resources.get("GPU", 0) // gpus_per_trial) if gpus_per_trial > 0 else None
    return max(1, min(limit for limit in (by_cpu, by_gpu) if limit is not None))


SHARED_STORAGE_HELP = (
    "every node must read and write the same --storage: use a path mounted on all nodes "
    "(NFS, EFS, a ReadWriteMany volume, or an S3/GCS bucket mounted with s3fs/gcsfuse)"
)


@ray.remote(num_cpus=0)
def _sees(path: str) -> tuple[str, bool]:
    return socket.gethostname(), os.path.exists(path)


def check_shared_storage(storage: str, *, timeout: float = 120.0) -> None:
    """On a multi-node cluster, every node must see the driver's storage folder: trials write
    checkpoints there and a retried trial reads them back on whichever node it lands on.
    A marker file written here must be visible from a task pinned to each alive node."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [node for node in ray.nodes() if node["Alive"]]
    if len(nodes) < 2:
        return
    marker = Path(storage) / f".metaxl-shared-{uuid.uuid4().hex}"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text("written by the metaxl-tune driver to check that storage is shared\n")
    try:
        checks = {
            node["NodeID"]: _sees.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
            ).remote(str(marker))
            for node in nodes
        }
        ready, _ = ray.wait(list(checks.values()), num_returns=len(checks), timeout=timeout)
        if len(ready) < len(checks):
            raise ClusterError(f"could not check --storage {storage} on every node within {timeout:.0f} s; {SHARED_STORAGE_HELP}")
        blind = [(node_id, *ray.get(ref)) for node_id, ref in checks.items()]
        blind = [(node_id, host) for node_id, host, sees in blind if not sees]
    finally:
        marker.unlink(missing_ok=True)
    if blind:
        node_id, host = blind[0]
        raise ClusterError(
            f"--storage {storage} is not shared: node {host} ({node_id[:12]}) does not see it "
            f"({len(blind)} of {len(nodes)} nodes); {SHARED_STORAGE_HELP}"
        )
