"""Can any node of the cluster ever hold one trial? Asked right after Ray connects.

Tune queues a trial that no node can hold and repeats "no trial is running" for ever; a trial
needs all its CPUs and GPUs on one node, so the request is compared with each node's total
resources, not with the cluster's sum. On an autoscaling cluster a fitting node may still come:
``--wait-for-resources SECONDS`` waits that long for one, saying what it waits for.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from metaxl_tune.search.execution.cluster import ClusterError

PROGRESS_EVERY_S = 30.0
POLL_S = 2.0


@dataclass(frozen=True)
class TrialRequest:
    """One trial's resources, as passed to Tune (``build_trainable``)."""

    cpus: float
    gpus: float

    def fits(self, node: Mapping[str, float]) -> bool:
        return node.get("CPU", 0.0) >= self.cpus and node.get("GPU", 0.0) >= self.gpus

    def text(self) -> str:
        return f"{self.cpus:g} CPU{'s' * (self.cpus != 1)} and {self.gpus:g} GPU{'s' * (self.gpus != 1)}"


def node_resources() -> list[dict[str, float]]:
    """Each alive node's total resources (``ray.nodes()``)."""
    import ray

    return [dict(node.get("Resources", {})) for node in ray.nodes() if node.get("Alive")]


def largest(nodes: Sequence[Mapping[str, float]]) -> Mapping[str, float]:
    """The node with the most GPUs, then CPUs (an empty mapping for no node)."""
    return max(nodes, key=lambda node: (node.get("GPU", 0.0), node.get("CPU", 0.0)), default={})


def _flags_at_fault(request: TrialRequest, nodes: Sequence[Mapping[str, float]]) -> str:
    """The flag(s) that no node meets: GPUs, CPUs, or both when no node meets them together."""
    short = [flag for flag, key, amount in (("--gpus-per-trial", "GPU", request.gpus), ("--cpus-per-trial", "CPU", request.cpus))
             if not any(node.get(key, 0.0) >= amount for node in nodes)]
    return " and ".join(short) if short else "--cpus-per-trial with --gpus-per-trial"


def describe_node(node: Mapping[str, float]) -> str:
    return f"{node.get('CPU', 0.0):g} CPUs and {node.get('GPU', 0.0):g} GPUs"


def unfit_message(request: TrialRequest, nodes: Sequence[Mapping[str, float]], waited_s: float | None = None) -> str:
    """``waited_s``: how long --wait-for-resources waited (None: it did not wait)."""
    flags = _flags_at_fault(request, nodes)
    if not nodes:
        where = "the cluster has no alive node"
    elif len(nodes) == 1:
        where = f"its one node has {describe_node(nodes[0])}"
    else:
        where = f"the largest of its {len(nodes)} nodes has {describe_node(largest(nodes))}"
    waited = f" (waited {waited_s:.0f} s)" if waited_s is not None else ""
    return (f"{flags}: one trial needs {request.text()} on one node, but {where}{waited}; lower {flags}, "
            "add a node that fits, or on an autoscaling cluster pass --wait-for-resources SECONDS")


def check_trial_fits(
    request: TrialRequest,
    *,
    wait_s: float = 0.0,
    log: Callable[[str], None] = print,
    nodes: Callable[[], list[dict[str, float]]] = node_resources,
    poll_s: float = POLL_S,
) -> None:
    """Return once some node can hold ``request``; raise ClusterError (one line naming the flag,
    the request and the largest node) when none does now and none came within ``wait_s``."""
    started = time.monotonic()
    last_said = None
    while True:
        current = nodes()
        if any(request.fits(node) for node in current):
            return
        waited = time.monotonic() - started
        if waited >= wait_s:
            raise ClusterError(unfit_message(request, current, waited if wait_s > 0 else None))
        if last_said is None or time.monotonic() - last_said >= PROGRESS_EVERY_S:
            largest_now = describe_node(largest(current)) if current else "none"
            log(f"waiting up to {wait_s - waited:.0f} s more for a node with {request.text()} "
                f"(--wait-for-resources; largest node now: {largest_now})")
            last_said = time.monotonic()
        time.sleep(min(poll_s, max(0.0, wait_s - waited)))
