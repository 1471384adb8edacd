"""Peak memory of a training run, per epoch, so a user can size --gpus-per-trial from data.

CUDA: the caching allocator's peak of allocated bytes (``torch.cuda.max_memory_allocated``),
reset at the start of each epoch. CPU: the peak resident set of the process (VmHWM), reset at
the start of each epoch by writing 5 to /proc/self/clear_refs (Linux >= 4.0); where that reset
is not available the value is the process's peak so far (``ru_maxrss``).
"""

from __future__ import annotations

import resource
from pathlib import Path

import torch

MIB = 2**20


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass  # no per-epoch reset here: peak_memory_mib is then the peak since the process started


def peak_memory_mib(device: torch.device) -> float:
    """Peak since the last reset, in MiB (see the module docstring for what is measured)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / MIB
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / MIB
    except OSError:
        pass
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MIB
