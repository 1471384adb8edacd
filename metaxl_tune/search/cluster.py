"""Connecting to Ray: a local instance by default, or a running cluster by address.

An address that does not answer fails in seconds with a message, instead of Ray's long
retry loop; the local instance binds its dashboard to 127.0.0.1.
"""

from __future__ import annotations

import os
import socket

import ray

LOCAL = "local"


class ClusterError(ValueError):
    """Ray cannot be reached; the message says what to change."""


def probe(address: str, *, timeout: float = 3.0) -> None:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(f"--address {address}: expected HOST:PORT (e.g. 10.0.0.5:6379), 'auto' or 'local'")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as error:
        raise ClusterError(
            f"cannot reach a Ray head at {address} ({error.strerror or error}); start one with "
            f"`ray start --head --port {port}` there, or drop --address to run on a local Ray"
        ) from None


def resolve_address(address: str | None) -> str:
    return address or os.environ.get("RAY_ADDRESS") or LOCAL


def check_address(address: str) -> None:
    """Cheap reachability check, done before any data or model work."""
    if address not in (LOCAL, "auto"):
        probe(address.removeprefix("ray://"))


def connect(address: str) -> None:
    if ray.is_initialized():
        return
    if address == LOCAL:
        # RAY_ADDRESS would make ray.init join a cluster; "local" means start our own.
        os.environ.pop("RAY_ADDRESS", None)
        ray.init(include_dashboard=False, configure_logging=False, log_to_driver=False)
        return
    try:
        ray.init(address=address, log_to_driver=False)
    except ConnectionError as error:
        raise ClusterError(f"cannot join the Ray cluster at {address}: {error}".splitlines()[0]) from None


def cluster_gpus() -> float:
    return float(ray.cluster_resources().get("GPU", 0))


def cluster_slots(*, cpus_per_trial: float, gpus_per_trial: float) -> int:
    """How many trials of this size the cluster holds at once (at least one)."""
    resources = ray.cluster_resources()
    by_cpu = int(resources.get("CPU", 0) // cpus_per_trial) if cpus_per_trial > 0 else None
    by_gpu = int(resources.get("GPU", 0) // gpus_per_trial) if gpus_per_trial > 0 else None
    return max(1, min(limit for limit in (by_cpu, by_gpu) if limit is not None))
