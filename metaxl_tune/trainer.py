"""The epoch loop: train, evaluate dev and test every epoch, checkpoint, report.

Knows nothing about Ray or MLflow: per-epoch results leave through the ``on_epoch`` callback,
which the search layer turns into Tune reports and MLflow metrics.
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import torch
from tqdm.auto import tqdm

from metaxl_tune.bilevel import IGNORE_INDEX, BackoffFinetuner, Learner
from metaxl_tune.checkpoint import (
    BEST_FILE,
    STATE_FILE,
    CheckpointWriter,
    link_or_copy,
    load_best,
    load_checkpoint,
    restore_rng_state,
    save_best,
    save_checkpoint,
    serialize_best,
    serialize_state,
    training_state,
)
from metaxl_tune.checkpoint_policy import CheckpointPolicy
from metaxl_tune.config import RunConfig
from metaxl_tune.data.encoding import Batcher
from metaxl_tune.data.prepare import PreparedData, describe_sizes, prepare_data
from metaxl_tune.memory import peak_memory_mib, reset_peak_memory
from metaxl_tune.metrics import ner_f1, positive_f1, sentence_predictions
from metaxl_tune.model.backbone import encoder_modules, hidden_size, load_backbone, load_model_config
from metaxl_tune.model.fit import check_fit
from metaxl_tune.model.pretrain import pretrained_model
from metaxl_tune.model.rtn import RTNBank
from metaxl_tune.precision import check_precision
from metaxl_tune.run_folder import RunFolderError, config_differences
from metaxl_tune.source_sampler import SourceSchedule

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
    stage: str = "train"
    """'train' (the configured method) or 'finetune' (back-off fine-tuning, RTN frozen)."""
    sources: dict[str, float] = field(default_factory=dict)
    """Multi-source bookkeeping, flat metric names: ``source_steps/<lang>`` (steps this epoch)
    and, for the bandit, ``source_weight/<lang>`` (sampling probability at the epoch's end)."""
    peak_memory_mib: float | None = None
    """Peak memory during this epoch (CUDA max allocated, or the process's peak RSS on CPU)."""
    rtn_mix: dict[str, float] = field(default_factory=dict)
    """The learned mixture weights at the end of the epoch (rtn_combine mixture), e.g. rtn_mix_12."""

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
            **source_summary(self.history),
        }


def source_summary(history: list[EpochResult]) -> dict:
    """Steps per source language over all epochs and, for the bandit, its final sampling weights."""
    steps: dict[str, float] = {}
    for entry in history:
        for key, value in entry.sources.items():
            if key.startswith("source_steps/"):
                language = key.removeprefix("source_steps/")
                steps[language] = steps.get(language, 0) + value
    last = history[-1].sources if history else {}
    weights = {key.removeprefix("source_weight/"): p for key, p in last.items() if key.startswith("source_weight/")}
    return {"source_steps": {language: int(count) for language, count in steps.items()}, "source_weights": weights}


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
        check_precision(config.precision, self.device)
        fit = check_fit(config)  # placements and max_length against the model, before any data
        model_config, self.placements = fit.model_config, fit.placements
        cache_dir = Path(cache_dir or default_cache_dir())
        # tiny-pretrained is a saved model in the cache, built (once) before anything else needs it.
        model_name = pretrained_model(config, cache_dir, progress=progress, log=log)
        if model_name != config.model:
            model_config = load_model_config(model_name, max_length=config.max_length)

        self.data: PreparedData = prepare_data(config, cache_dir, progress=log)
        if log is not None:
            log(describe_sizes(self.data.sizes()))
        # Which source language each step uses (source_sampler); a language's batch count is its
        # sample over the batch size, so an epoch passes once over every source sample.
        self.sources = SourceSchedule(
            config.source_strategy,
            [math.ceil(len(batcher) / config.batch_size) for batcher in self.data.source_trains] or [1],
            seed=config.seed,
        )
        if config.model == "tiny":
            model_config = load_model_config(
                config.model, max_length=config.max_length, vocab_size=len(self.data.tokenizer)
            )

        torch.manual_seed(config.seed)
        self.model = load_backbone(
            model_name, model_config, task=config.task, num_labels=len(self.data.label_names),
            attention=config.attention,
        ).to(self.device)
        self.rtn = None
        if config.uses_rtn:
            self.rtn = RTNBank(
                self.placements,
                hidden_size(model_config),
                config.rtn_bottleneck,
                gate=config.rtn_gate,
                detach_input=config.rtn_detach_input,
                num_sources=len(config.source_languages) if config.rtn_per_source else 1,
                init=config.rtn_init,
            ).to(self.device)
            self.rtn.attach(*encoder_modules(self.model))
        self.learner = Learner(self.model, self.rtn, config, total_steps=config.epochs * self.steps_per_epoch)
        self.finetuner: BackoffFinetuner | None = None

    # ---- batching ------------------------------------------------------------------------

    @property
    def steps_per_epoch(self) -> int:
        # An epoch is one pass over every source language's sample (the target batches cycle),
        # or over the target sample for target-only training.
        if not self.config.uses_source:
            return math.ceil(len(self.data.target_train) / self.config.batch_size)
        return self.sources.steps_per_epoch

    def _epoch_plan(self, epoch: int) -> Iterator[tuple[int | None, list[int] | None, list[int]]]:
        """(source language index, source indices, target indices) per step.

        Batch order is a pure function of (seed, epoch) and, for the bandit, of the sampler
        state at the epoch's start (saved in the checkpoint), so a resumed run is identical.
        """
        generator = torch.Generator().manual_seed(self.config.seed * 100_003 + epoch)
        size, steps = self.config.batch_size, self.steps_per_epoch
        n_target = len(self.data.target_train)
        target_stream: list[int] = []
        while len(target_stream) < steps * size:
            target_stream += torch.randperm(n_target, generator=generator).tolist()
        if not self.config.uses_source:
            order = target_stream[:n_target]
            for start in range(0, n_target, size):
                yield None, None, order[start : start + size]
            return
        # One shuffled pass per language, drawn in language order (a single source draws exactly
        # what the single-source loop always drew). Sampled strategies may ask a language for
        # more batches than it has: it then starts another shuffled pass.
        orders = [torch.randperm(len(b), generator=generator).tolist() for b in self.data.source_trains]
        cursors = [0] * len(orders)
        for step, language in enumerate(self.sources.languages(epoch)):
            if cursors[language] >= len(orders[language]):
                orders[language] = torch.randperm(len(orders[language]), generator=generator).tolist()
                cursors[language] = 0
            source = orders[language][cursors[language] : cursors[language] + size]
            cursors[language] += size
            yield language, source, target_stream[step * size : (step + 1) * size]

    # ---- evaluation ------------------------------------------------------------------------

    @torch.inference_mode()
    def evaluate(self, batcher: Batcher) -> float:
        self.model.eval()
        gold, predicted = [], []
        for start in range(0, len(batcher), EVAL_BATCH_SIZE):
            rows = range(start, min(start + EVAL_BATCH_SIZE, len(batcher)))
            batch = batcher.batch(rows, self.device)
            with self.learner.precision.autocast():
                logits = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            predictions = logits.argmax(-1).cpu()
            labels = batch["labels"].cpu()
            if self.config.task == "sa":
                gold += labels.tolist()
                predicted += predictions.tolist()
                continue
            # Whole sentences: gold from the original words, words cut by max_length predicted O.
            for row, row_labels, row_predictions in zip(rows, labels, predictions):
                keep = row_labels != IGNORE_INDEX
                words = batcher.word_labels[row]
                gold.append(words)
                predicted.append(sentence_predictions(len(words), batcher.word_ids[row], row_predictions[keep].tolist()))
        return ner_f1(gold, predicted) if self.config.task == "ner" else positive_f1(gold, predicted)

    # ---- the loop ----------------------------------------------------------------------------

    def _stage(self, epoch: int) -> str:
        return "finetune" if epoch > self.config.epochs else "train"

    def _step_function(self, epoch: int) -> Callable:
        if self._stage(epoch) == "train":
            return self.learner.step
        if self.finetuner is None:
            self.finetuner = BackoffFinetuner(self.learner)
        return self.finetuner.step

    def _train_epoch(self, epoch: int) -> tuple[float, float | None, dict[str, float]]:
        train_losses, meta_losses = [], []
        steps_per_language = [0] * len(self.data.source_languages)
        data = self.data
        step = self._step_function(epoch)
        plan = tqdm(
            self._epoch_plan(epoch),
            total=self.steps_per_epoch,
            desc=f"epoch {epoch}/{self.config.total_epochs}",
            disable=not self.progress,
            leave=False,
        )
        for language, source_indices, target_indices in plan:
            source = data.source_trains[language].batch(source_indices, self.device) if language is not None else None
            # The RTN set (and mixture logits) of the step's language when each source language has
            # its own (rtn_per_source, the reference's meta_per_lang), else the one shared set.
            rtn_set = language if language is not None and self.config.rtn_per_source else 0
            losses = step(source, data.target_train.batch(target_indices, self.device), source_index=rtn_set)
            if not math.isfinite(losses.train_loss):
                raise DivergedError(f"training loss became {losses.train_loss} at epoch {epoch}")
            if language is not None:
                steps_per_language[language] += 1
                # The bandit's reward: how much this step lowered the meta (else training) loss.
                self.sources.observe(language, losses.meta_loss if losses.meta_loss is not None else losses.train_loss)
            train_losses.append(losses.train_loss)
            if losses.meta_loss is not None:
                meta_losses.append(losses.meta_loss)
            plan.set_postfix(loss=f"{losses.train_loss:.4f}")
        mean = lambda values: sum(values) / len(values) if values else None  # noqa: E731
        return mean(train_losses), mean(meta_losses), self._source_metrics(steps_per_language)

    def _source_metrics(self, steps_per_language: list[int]) -> dict[str, float]:
        languages = self.data.source_languages
        if len(languages) < 2:
            return {}
        metrics = {f"source_steps/{language}": float(count) for language, count in zip(languages, steps_per_language)}
        if self.config.source_strategy == "bandit":
            metrics.update(
                {f"source_weight/{language}": p for language, p in zip(languages, self.sources.probabilities())}
            )
        return metrics

    def _mixture_weights(self) -> dict[str, float]:
        """softmax of the learned mixture logits (rtn_combine mixture), per source language."""
        if self.rtn is None or self.config.rtn_combine != "mixture":
            return {}
        names = self.data.source_languages if self.rtn.num_sources > 1 else None
        return self.rtn.mixture_report(names)

    # ---- checkpoints (policy: metaxl_tune/checkpoint_policy.py; files: metaxl_tune/checkpoint.py) ----

    def _state(self, epoch: int, history: list[EpochResult]) -> dict:
        return training_state(
            epoch, self.config, self.model, self.rtn, self.learner, [asdict(entry) for entry in history],
            finetune=self.finetuner.state_dict() if self.finetuner is not None else None,
            sources=self.sources.state_dict(),
        )

    @property
    def best_path(self) -> Path:
        """The best-dev weights (theta and phi), rewritten only when dev F1 improves."""
        return self.output_dir / "best" / BEST_FILE

    def _restore(self, directory: Path) -> list[EpochResult]:
        state = load_checkpoint(directory)
        differences = config_differences(state.get("config", self.config.to_dict()), self.config)
        if differences:
            raise RunFolderError(
                f"checkpoint {directory / STATE_FILE} was written by another config: {'; '.join(differences)}"
            )
        saved_best = Path(directory) / BEST_FILE
        if saved_best.is_file():
            load_best(saved_best)  # verify before anything in the output folder changes
        self.model.load_state_dict(state["theta"])
        if self.rtn is not None:
            self.rtn.load_state_dict(state["phi"])
        self.learner.load_state_dict(state["learner"])
        if state.get("finetune") is not None:
            self.finetuner = BackoffFinetuner(self.learner)
            self.finetuner.load_state_dict(state["finetune"])
        restore_rng_state(state["rng"])
        if "sources" in state:
            self.sources.load_state_dict(state["sources"])
        # The best weights that belong to this history: a newer best/ from epochs after the
        # checkpoint (lost with the interruption) must not survive the resume.
        if saved_best.is_file():
            if saved_best.resolve() != self.best_path.resolve():
                link_or_copy(saved_best, self.best_path)
        elif self.best_path.exists():
            self.best_path.unlink()
        return [EpochResult(**entry) for entry in state["history"]]

    def _best_bytes(self, entry: EpochResult) -> bytes:
        metadata = {"epoch": entry.epoch, "dev_f1": entry.dev_f1, "test_f1": entry.test_f1,
                    "method": self.config.method, "placements": self.placements}
        return serialize_best(self.model.state_dict(), self.rtn.state_dict() if self.rtn is not None else {}, metadata)

    def _save_best(self) -> None:
        """The user-facing export of the best epoch (HF model folder, tokenizer, rtn.pt), once
        at the end from the best-dev weights; the model and RTN are left holding them."""
        theta, phi, _ = load_best(self.best_path)
        self.model.load_state_dict(theta)
        self.model.save_pretrained(self.output_dir / "model")
        self.data.tokenizer.save_pretrained(self.output_dir / "model")
        if self.rtn is not None:
            self.rtn.load_state_dict(phi)
            torch.save({"placements": self.placements, "state": self.rtn.state_dict()}, self.output_dir / "rtn.pt")

    def fit(
        self,
        *,
        on_epoch: Callable[[EpochResult, Path | None], None] | None = None,
        resume_from: Path | None = None,
        checkpoint_dir: Path | None = None,
        wait_for_checkpoints: bool = True,
    ) -> RunResult:
        """Train the remaining epochs; ``resume_from`` continues from a checkpoint directory.

        ``on_epoch(entry, checkpoint)`` gets the checkpoint folder on the epochs where the policy
        (``config.checkpoint_every``) wrote a resume checkpoint, else None. The checkpoint is
        serialised on this thread and written in the background; with ``wait_for_checkpoints``
        (needed when ``on_epoch`` reads the folder, as Tune's report does) the write is finished
        before ``on_epoch`` runs, otherwise it overlaps the next epoch. Nothing in the output
        folder is written before a resume checkpoint has loaded and matched the config.
        """
        checkpoint_dir = Path(checkpoint_dir or self.output_dir / "checkpoint")
        history = self._restore(Path(resume_from)) if resume_from is not None else []
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.config.dump(self.output_dir / "config.yaml")
        result = RunResult(self.config, history, data_sizes=self.data.sizes())
        policy = CheckpointPolicy(self.config.checkpoint_every, self.config.total_epochs)
        writer = CheckpointWriter()

        try:
            for epoch in range(len(history) + 1, self.config.total_epochs + 1):
                started = time.perf_counter()
                reset_peak_memory(self.device)
                train_loss, meta_loss, source_metrics = self._train_epoch(epoch)
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
                    stage=self._stage(epoch),
                    sources=source_metrics,
                    peak_memory_mib=peak_memory_mib(self.device),
                    rtn_mix=self._mixture_weights(),
                )
                history.append(entry)
                if improved:
                    writer.submit(functools.partial(save_best, self.best_path, self._best_bytes(entry)))
                written = None
                if policy.due(epoch):
                    state_bytes, best_path = serialize_state(self._state(epoch, history)), self.best_path

                    def write_checkpoint(state_bytes=state_bytes, best_path=best_path) -> None:
                        save_checkpoint(checkpoint_dir, state_bytes)
                        if best_path.is_file():
                            link_or_copy(best_path, checkpoint_dir / BEST_FILE)

                    writer.submit(write_checkpoint)
                    policy.taken()
                    written = checkpoint_dir
                    if wait_for_checkpoints:
                        writer.wait()
                if on_epoch is not None:
                    on_epoch(entry, written)
        except BaseException:
            # Interrupted (Ctrl-C, a failed epoch): let a checkpoint already serialised reach the
            # disk, but never hide the original error behind a write error.
            try:
                writer.wait()
            except Exception:  # noqa: BLE001
                pass
            raise
        writer.wait()
        if self.save_model and self.best_path.is_file():
            self._save_best()

        (self.output_dir / "results.json").write_text(json.dumps(result.to_dict(), indent=2), encoding="utf-8")
        return result
