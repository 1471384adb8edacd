"""Peak memory per epoch: the reset makes each epoch's peak its own."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from metaxl_tune.train.memory import peak_memory_mib, reset_peak_memory

CPU = torch.device("cpu")


def can_reset_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


@pytest.mark.skipif(not can_reset_rss(), reason="no /proc/self/clear_refs: CPU peak RSS cannot be reset per epoch")
def test_cpu_peak_covers_a_large_tensor_and_resets_after_it_is_freed():
    reset_peak_memory(CPU)
    baseline = peak_memory_mib(CPU)
    block = torch.ones(256 * 2**20 // 4)  # 256 MiB, written so its pages are resident
    held = peak_memory_mib(CPU)
    del block
    reset_peak_memory(CPU)
    after = peak_memory_mib(CPU)
    assert held - baseline >= 200
    assert after < held - 200
