"""Why a run cannot go on (train/outcome.stop_reason), as a trial reports it to the driver."""

from __future__ import annotations

import torch

from metaxl_tune.train.outcome import DIVERGED, OUT_OF_MEMORY, DivergedError, stop_reason


def test_a_nan_loss_and_every_kind_of_exhausted_memory_have_their_reason():
    assert stop_reason(DivergedError("loss is nan at step 3")) == DIVERGED
    assert stop_reason(torch.OutOfMemoryError("CUDA out of memory")) == OUT_OF_MEMORY
    assert stop_reason(MemoryError()) == OUT_OF_MEMORY
    assert stop_reason(RuntimeError("[enforce fail at alloc_cpu.cpp] DefaultCPUAllocator: can't allocate memory")) == (
        OUT_OF_MEMORY)


def test_any_other_error_has_no_reason_so_it_is_retried():
    assert stop_reason(RuntimeError("shape mismatch")) is None
    assert stop_reason(ValueError("bad value")) is None


def test_the_driver_reads_reasons_without_loading_torch():
    # The search driver's pruner and records import this module; torch there costs about 2 s of
    # every driver's start, and a driver never holds a torch error to classify.
    from processes import modules_loaded

    code = "from metaxl_tune.train.outcome import stop_reason\nassert stop_reason(MemoryError()) == 'out_of_memory'"
    assert modules_loaded(code, ("torch",)) == []
