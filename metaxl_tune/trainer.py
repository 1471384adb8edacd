"""The epoch loop: train, evaluate dev and test every epoch, checkpoint, report.

Knows nothing about Ray or MLflow: per-epoch results leave through the ``on_epoch`` callback,
which the search layer turns into Tune reports and MLflow metrics.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import torch
from tqdm.auto import tqdm

from metaxl_tune.bilevel import IGNORE_INDEX, Learner
from metaxl_tune.checkpoint import load_checkpoint, restore_rng_state, rng_state, save_checkpoint
from metaxl_tune.config import RunConfig
from metaxl_tune.data.encoding import Batcher
from metaxl_tune.data.prepare import PreparedData, prepare_data
from metaxl_tune.metrics import ner_f1, positive_f1
from metaxl_tune.model.backbone import encoder_modules, hidden_size, load_backbone, load_model_config, model_depth
from metaxl_tune.model.pretrain import pretrained_model
from metaxl_tune.model.rtn import RTNBank, resolve_placements

EVAL_BATCH_SIZE = 64


class DivergedError(RuntimeError):
    """The training loss became NaN or infinite."""


DIVERGED = "diverged"
OUT_OF_MEMORY = "out_of_memory"


def stop_reason(error: BaseException) -> str | None:
    """Why a run cannot go on with this config, for errors that a retry would only repeat:
    a NaN/inf loss, or memory exhausted (CUDA OOM, or the CPU allocator refusing a tensor)."""
    if isinstance(error, DivergedError):
        return DIVERGED
    if isinstance(error, (torch.OutOfMemoryError, MemoryError)):
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

    def metrics(self) -> dict[str, float]:
        return {key: value for key, value in asdict(self).items() if value is not None}


@dataclass
class RunResult:
    config: RunConfig
    history: list[EpochResult] = field(default_factory=list)

    @property
    def best(self) -> EpochResult:
        return self.history[-1]

    def to_dict(self) -> dict:
        best = self.best
        return {
            "config": self.config.to_dict(),
            "best_epoch": best.best_epoch,
            "best_dev_f1": best.best_dev_f1,
            "test_f1": best.best_test_f1,
            "history": [asdict(entry) for entry in self.history],
        }


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device: {name} requested but no CUDA device is visible; use --device cpu")
    return torch.device(name)


def default_cache_dir() -> Path:
    return Path(os.environ.get("METAXL_TUNE_CACHE", Path.home() / ".cache" / "metaxl-tune"))


class Run:
    """One configured training run: data, model, RTN and optimizers, built once in ``__init__``.

    The cheap checks (device, model depth vs RTN placement) come first, then data preparation,
    then the model weights, so a bad input fails before anything expensive.
    """

    def __init__(
        self,
        config: RunConfig,
        output_dir: Path,
        *,
        cache_dir: Path | None = None,
        progress: bool = True,
        save_model: bool = True,
        log: Callable[[str], None] | None = None,
    ):
        self.config = config
        self.output_dir = Path(output_dir)
        self.progress = progress
        self.save_model = save_model
        self.device = resolve_device(config.device)
        cache_dir = Path(cache_dir or default_cache_dir())
        # tiny-pretrained is a saved model in the cache, built (once) before anything else needs it.
        model_name = pretrained_model(config, cache_dir, progress=progress, log=log)
        model_config = load_model_config(model_name, max_length=config.max_length)
        depth = model_depth(model_config)
        self.placements = resolve_placements(config.rtn_layers, depth, config.model) if config.uses_rtn else []

        self.data: PreparedData = prepare_data(config, cache_dir, progress=log)
        if config.model == "tiny":
            model_config = load_model_config(
                config.model, max_length=config.max_length, vocab_size=len(self.data.tokenizer)
            )

        torch.manual_seed(config.seed)
        self.model = load_backbone(
            model_name, model_config, task=config.task, num_labels=len(self.data.label_names)
        ).to(self.device)
        self.rtn = None
        if config.uses_rtn:
            self.rtn = RTNBank(
                self.placements,
                hidden_size(model_config),
                config.rtn_bottleneck,
                gate=config.rtn_gate,
                detach_input=config.rtn_detach_input,
            ).to(self.device)
            self.rtn.attach(*encoder_modules(self.model))
        self.learner = Learner(self.model, self.rtn, config, total_steps=config.epochs * self.steps_per_epoch)

    # ---- batching ------------------------------------------------------------------------

    @property
    def steps_per_epoch(self) -> int:
        # An epoch is one pass over the source sample (the target batches cycle), or over the
        # target sample for target-only training.
        driver = self.data.target_train if not self.config.uses_source else self.data.source_train
        return math.ceil(len(driver) / self.config.batch_size)

    def _epoch_plan(self, epoch: int) -> Iterator[tuple[list[int] | None, list[int]]]:
        # Batch order is a pure function of (seed, epoch): resuming needs no sampler state.
        generator = torch.Generator().manual_seed(self.config.seed * 100_003 + epoch)
        size, steps = self.config.batch_size, self.steps_per_epoch
        n_target = len(self.data.target_train)
        target_stream: list[int] = []
        while len(target_stream) < steps * size:
            target_stream += torch.randperm(n_target, generator=generator).tolist()
        if not self.config.uses_source:
            order = target_stream[:n_target]
            for start in range(0, n_target, size):
                yield None, order[start : start + size]
            return
        source_order = torch.randperm(len(self.data.source_train), generator=generator).tolist()
        for step in range(steps):
            yield source_order[step * size : (step + 1) * size], target_stream[step * size : (step + 1) * size]

    # ---- evaluation ------------------------------------------------------------------------

    @torch.inference_mode()
    def evaluate(self, batcher: Batcher) -> float:
        self.model.eval()
        gold, predicted = [], []
        for start in range(0, len(batcher), EVAL_BATCH_SIZE):
            batch = batcher.batch(range(start, min(start + EVAL_BATCH_SIZE, len(batcher))), self.device)
            logits = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            predictions = logits.argmax(-1).cpu()
            labels = batch["labels"].cpu()
            if self.config.task == "sa":
                gold += labels.tolist()
                predicted += predictions.tolist()
                continue
            for row_labels, row_predictions in zip(labels, predictions):
                keep = row_labels != IGNORE_INDEX
                gold.append(row_labels[keep].tolist())
                predicted.append(row_predictions[keep].tolist())
        return ner_f1(gold, predicted) if self.config.task == "ner" else positive_f1(gold, predicted)

    # ---- the loop ----------------------------------------------------------------------------

    def _train_epoch(self, epoch: int) -> tuple[float, float | None]:
        train_losses, meta_losses = [], []
        data = self.data
        plan = tqdm(
            self._epoch_plan(epoch),
            total=self.steps_per_epoch,
            desc=f"epoch {epoch}/{self.config.epochs}",
            disable=not self.progress,
            leave=False,
        )
        for source_indices, target_indices in plan:
            source = data.source_train.batch(source_indices, self.device) if source_indices is not None else None
            losses = self.learner.step(source, data.target_train.batch(target_indices, self.device))
            if not math.isfinite(losses.train_loss):
                raise DivergedError(f"training loss became {losses.train_loss} at epoch {epoch}")
            train_losses.append(losses.train_loss)
            if losses.meta_loss is not None:
                meta_losses.append(losses.meta_loss)
            plan.set_postfix(loss=f"{losses.train_loss:.4f}")
        mean = lambda values: sum(values) / len(values) if values else None  # noqa: E731
        return mean(train_losses), mean(meta_losses)

    def _state(self, epoch: int, history: list[EpochResult]) -> dict:
        return {
            "epoch": epoch,
            "theta": self.model.state_dict(),
            "phi": self.rtn.state_dict() if self.rtn is not None else {},
            "learner": self.learner.state_dict(),
            "rng": rng_state(),
            "history": [asdict(entry) for entry in history],
        }

    def _restore(self, directory: Path) -> list[EpochResult]:
        state = load_checkpoint(directory)
        self.model.load_state_dict(state["theta"])
        if self.rtn is not None:
            self.rtn.load_state_dict(state["phi"])
        self.learner.load_state_dict(state["learner"])
        restore_rng_state(state["rng"])
        return [EpochResult(**entry) for entry in state["history"]]

    def _save_best(self) -> None:
        self.model.save_pretrained(self.output_dir / "model")
        self.data.tokenizer.save_pretrained(self.output_dir / "model")
        if self.rtn is not None:
            torch.save({"placements": self.placements, "state": self.rtn.state_dict()}, self.output_dir / "rtn.pt")

    def fit(
        self,
        *,
        on_epoch: Callable[[EpochResult, Path], None] | None = None,
        resume_from: Path | None = None,
        checkpoint_dir: Path | None = None,
    ) -> RunResult:
        """Train the remaining epochs; ``resume_from`` continues from a checkpoint directory."""
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.config.dump(self.output_dir / "config.yaml")
        checkpoint_dir = Path(checkpoint_dir or self.output_dir / "checkpoint")
        history = self._restore(Path(resume_from)) if resume_from is not None else []
        result = RunResult(self.config, history)

        for epoch in range(len(history) + 1, self.config.epochs + 1):
            started = time.perf_counter()
            train_loss, meta_loss = self._train_epoch(epoch)
            dev_f1, test_f1 = self.evaluate(self.data.target_dev), self.evaluate(self.data.target_test)
            previous = history[-1] if history else None
            improved = previous is None or dev_f1 > previous.best_dev_f1
            entry = EpochResult(
                epoch=epoch,
                dev_f1=dev_f1,
                test_f1=test_f1,
                train_loss=train_loss,
                meta_loss=meta_loss,
                epoch_seconds=time.perf_counter() - started,
                best_epoch=epoch if improved else previous.best_epoch,
                best_dev_f1=dev_f1 if improved else previous.best_dev_f1,
                best_test_f1=test_f1 if improved else previous.best_test_f1,
            )
            history.append(entry)
            if improved and self.save_model:
                self._save_best()
            save_checkpoint(checkpoint_dir, self._state(epoch, history))
            if on_epoch is not None:
                on_epoch(entry, checkpoint_dir)

        (self.output_dir / "results.json").write_text(json.dumps(result.to_dict(), indent=2), encoding="utf-8")
        return result
