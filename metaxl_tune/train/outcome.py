"""What a run reports and how it ends: each epoch's results (``EpochResult``), the run's
(``RunResult``, written as results.json), and why a run cannot go on with its config
(``stop_reason``: a diverged loss or exhausted memory, which a retry would only repeat).

Plain records: the trainer fills them, the CLI prints them, a search trial reports them to Tune
and its driver to MLflow.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field

from metaxl_tune.config import RunConfig


class DivergedError(RuntimeError):
    """The training or meta loss became NaN or infinite; the message says where and what to lower."""


def divergence_message(config: RunConfig, loss: str, value: float, epoch: int, step: int, steps: int) -> str:
    """``<loss> became <value> at epoch E, step S of N; lower <the rates that feed it>``."""
    rates = [f"--lr (now {config.lr:g})"]
    if config.uses_rtn:
        meta = f"--meta-lr (now {config.meta_lr:g})"
        rates = [meta, *rates] if loss == "meta loss" else [*rates, meta]
    return f"{loss} became {value} at epoch {epoch}, step {step} of {steps}; lower {' or '.join(rates)}"


DIVERGED = "diverged"
OUT_OF_MEMORY = "out_of_memory"
STOP_REASON = "stop_reason"
"""The result key under which a run that cannot go on reports ``stop_reason``'s value (a search
trial's last Tune result; the driver's pruner and records read it back)."""


def stop_reason(error: BaseException) -> str | None:
    """Why a run cannot go on with this config, for errors that a retry would only repeat:
    a NaN/inf loss, or memory exhausted (CUDA OOM, or the CPU allocator refusing a tensor)."""
    if isinstance(error, DivergedError):
        return DIVERGED
    # torch's own error exists only where torch is loaded; the driver's pruner, which reads these
    # names, runs without it.
    torch = sys.modules.get("torch")
    if isinstance(error, MemoryError) or (torch is not None and isinstance(error, torch.OutOfMemoryError)):
        return OUT_OF_MEMORY
    if isinstance(error, RuntimeError) and ("can't allocate memory" in str(error) or "out of memory" in str(error)):
        return OUT_OF_MEMORY
    return None


@dataclass
class EpochResult:
    epoch: int
    dev_f1: float
    test_f1: float
    train_loss: float
    meta_loss: float | None
    epoch_seconds: float
    best_epoch: int
    best_dev_f1: float
    best_test_f1: float
    """Test F1 at the best-dev epoch: the number the paper reports."""
    stage: str = "train"
    """'train' (the configured method) or 'finetune' (back-off fine-tuning, RTN frozen)."""
    sources: dict[str, float] = field(default_factory=dict)
    """Multi-source bookkeeping, flat metric names: ``source_examples/<lang>`` (source examples of
    that language trained on this epoch); for the one-language-per-batch strategies also
    ``source_steps/<lang>`` (steps this epoch; a mixed batch has no one language to count it for)
    and, for the bandit, ``source_weight/<lang>`` (sampling probability at the epoch's end)."""
    peak_memory_mib: float | None = None
    """Peak memory during this epoch (CUDA max allocated, or the process's peak RSS on CPU)."""
    rtn_mix: dict[str, float] = field(default_factory=dict)
    """The learned mixture weights at the end of the epoch (rtn_combine mixture), e.g. rtn_mix_12."""
    finetune_from_epoch: int | None = None
    """Fine-tuning stage only: the training-stage epoch (its best dev F1) whose theta and phi the
    stage started from, as the reference's --do_finetune starts from best.pt and best_meta.pt."""

    def metrics(self) -> dict[str, float]:
        # Numbers only (Tune and MLflow metrics): the stage shows as epochs past config.epochs.
        values = {key: value for key, value in asdict(self).items() if isinstance(value, (int, float))}
        return {**values, **self.sources, **self.rtn_mix}


@dataclass
class RunResult:
    config: RunConfig
    history: list[EpochResult] = field(default_factory=list)
    data_sizes: dict = field(default_factory=dict)
    """Examples actually used (PreparedData.sizes): source per language, target train/dev/test."""
    eval_max_length: int | None = None
    """The sub-word length dev and test were encoded at (config.eval_max_length capped to the model)."""

    @property
    def best(self) -> EpochResult:
        return self.history[-1]

    def to_dict(self) -> dict:
        best = self.best
        return {
            "config": self.config.to_dict(),
            "best_epoch": best.best_epoch,
            "best_stage": self.history[best.best_epoch - 1].stage,
            "best_dev_f1": best.best_dev_f1,
            "test_f1": best.best_test_f1,
            "history": [asdict(entry) for entry in self.history],
            "data_sizes": self.data_sizes,
            "eval_max_length": self.eval_max_length,
            "finetune_from_epoch": next(
                (entry.finetune_from_epoch for entry in self.history if entry.finetune_from_epoch is not None), None
            ),
            **source_summary(self.history),
        }


def source_summary(history: list[EpochResult]) -> dict:
    """Examples and steps per source language over all epochs and, for the bandit, its final
    sampling weights."""
    totals: dict[str, dict[str, float]] = {"source_examples": {}, "source_steps": {}}
    for entry in history:
        for key, value in entry.sources.items():
            kind, _, language = key.partition("/")
            if kind in totals:
                totals[kind][language] = totals[kind].get(language, 0) + value
    last = history[-1].sources if history else {}
    weights = {key.removeprefix("source_weight/"): p for key, p in last.items() if key.startswith("source_weight/")}
    counts = {kind: {language: int(count) for language, count in values.items()} for kind, values in totals.items()}
    return {**counts, "source_weights": weights}
