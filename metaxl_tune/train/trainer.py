"""The epoch loop: build a run, train, evaluate dev and test every epoch, checkpoint, report.

Knows nothing about Ray or MLflow: per-epoch results leave through the ``on_epoch`` callback,
which the search layer turns into Tune reports and MLflow metrics. What a run reports and why
it stops are in outcome.py, which examples each step uses in batches.py, the scoring in
evaluation.py; the names outcome.py defines are still importable from here.
"""

from __future__ import annotations

import functools
import json
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import torch
from metaxl_tune.common.paths import default_cache_dir
from metaxl_tune.common.progress import progress as progress_of

from metaxl_tune.train.batches import EpochBatches
from metaxl_tune.train.bilevel import BackoffFinetuner, Learner
from metaxl_tune.train.checkpoint import (
    BEST_FILE,
    STATE_FILE,
    CheckpointWriteError,
    link_or_copy,
    load_best,
    load_checkpoint,
    remove_stray_partials,
    restore_rng_state,
    save_best,
    save_checkpoint,
    serialize_best,
    serialize_state,
    training_state,
)
from metaxl_tune.train.checkpoint_policy import CheckpointPolicy
from metaxl_tune.train.checkpoint_writer import CheckpointWriter
from metaxl_tune.config import RunConfig
from metaxl_tune.data.encoding import Batcher
from metaxl_tune.train.evaluation import EVAL_BATCH_SIZE, evaluate_f1  # noqa: F401 - EVAL_BATCH_SIZE: its old home
from metaxl_tune.train.outcome import (  # noqa: F401 - DIVERGED ... source_summary: re-exported, their old home
    DIVERGED, OUT_OF_MEMORY, DivergedError, EpochResult, RunResult, divergence_message, source_summary, stop_reason,
)
from metaxl_tune.train.prepare import PreparedData, describe_sizes, prepare_data
from metaxl_tune.train.memory import peak_memory_mib, reset_peak_memory
from metaxl_tune.model.backbone import encoder_modules, load_backbone
from metaxl_tune.model.model_config import ModelShape, hidden_size, load_model_config
from metaxl_tune.model.fit import ModelFit, check_fit
from metaxl_tune.model.pretrain import pretrained_model
from metaxl_tune.model.rtn import RTNBank
from metaxl_tune.train.precision import check_precision
from metaxl_tune.train.run_folder import RunFolderError, config_differences, keep_or_set_aside_best
from metaxl_tune.train.source_sampler import MIXED


def _of_epoch(epoch: int, job: Callable[[], None]) -> Callable[[], None]:
    """A checkpoint write job whose failure names the epoch it was writing."""

    def run() -> None:
        try:
            job()
        except CheckpointWriteError as error:
            raise error.at_epoch(epoch) from None

    return run


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device: {name} requested but no CUDA device is visible; use --device cpu")
    return torch.device(name)


class Run:
    """One configured training run: data, model, RTN and optimizers, built once in ``__init__``.

    The cheap checks (device, model depth vs RTN placement) come first, then data preparation,
    then the model weights, so a bad input fails before anything expensive. ``fit`` is
    ``check_fit(config)`` when the caller has already checked the config against its model
    (``metaxl-tune train`` does, before the run folder changes): it is used, not recomputed.
    """

    def __init__(
        self,
        config: RunConfig,
        output_dir: Path,
        *,
        fit: ModelFit | None = None,
        cache_dir: Path | None = None,
        progress: bool = True,
        save_model: bool = True,
        log: Callable[[str], None] | None = None,
    ):
        self.config = config
        self.output_dir = Path(output_dir)
        self.progress = progress
        self.save_model = save_model
        self.log = log
        self.device = resolve_device(config.device)
        check_precision(config.precision, self.device)
        if fit is None:
            fit = check_fit(config)  # placements and max_length against the model, before any data
        model_config, self.placements = fit.model_config, fit.placements
        cache_dir = Path(cache_dir or default_cache_dir())
        # tiny-pretrained is a saved model in the cache, built (once) before anything else needs it.
        model_name = pretrained_model(config, cache_dir, progress=progress, log=log)
        if model_name != config.model or isinstance(model_config, ModelShape):
            # The fit check read a built-in model's shape alone (model_config.ModelShape): the
            # model is built from its full config.
            model_config = load_model_config(model_name, max_length=config.max_length)

        self.data: PreparedData = prepare_data(config, cache_dir, progress=log, eval_max_length=fit.eval_max_length)
        if log is not None:
            # After the data checks, so that a bad data file stays the one line a mistake gets. A
            # trial (no log) keeps its output quiet: results.json records the length used.
            notice = fit.eval_cap_notice(config)
            if notice is not None:
                log(notice)
            log(describe_sizes(self.data.sizes()))
        self.batches = EpochBatches(config, self.data)
        if config.model == "tiny":
            model_config = load_model_config(
                config.model, max_length=config.max_length, vocab_size=len(self.data.tokenizer)
            )

        torch.manual_seed(config.seed)
        self.model = load_backbone(
            model_name, model_config, task=config.task, num_labels=len(self.data.label_names),
            attention=config.attention, log=log,
        ).to(self.device)
        self.rtn = None
        if config.uses_rtn:
            self.rtn = RTNBank(
                self.placements,
                hidden_size(model_config),
                config.rtn_bottleneck,
                gate=config.rtn_gate,
                detach_input=config.rtn_detached,
                num_sources=len(config.source_languages) if config.rtn_per_source else 1,
                residual=config.rtn_residual,
                init=config.rtn_init,
            ).to(self.device)
            self.rtn.attach(*encoder_modules(self.model))
        self.learner = Learner(self.model, self.rtn, config, total_steps=self.batches.schedule_steps)
        self.finetuner: BackoffFinetuner | None = None
        self._writer: CheckpointWriter | None = None
        self.finetune_from: int | None = None
        """The epoch whose best-dev weights the back-off fine-tuning stage started from."""

    @property
    def steps_per_epoch(self) -> int:
        return self.batches.steps_per_epoch

    def evaluate(self, batcher: Batcher) -> float:
        """F1 on a dev or test split (evaluation.py), at the run's precision."""
        return evaluate_f1(self.model, batcher, task=self.config.task, device=self.device,
                           autocast=self.learner.precision.autocast)

    # ---- the loop ----------------------------------------------------------------------------

    def _stage(self, epoch: int) -> str:
        return "finetune" if epoch > self.config.epochs else "train"

    def _step_function(self, epoch: int) -> Callable:
        return self.learner.step if self._stage(epoch) == "train" else self.finetuner.step

    def _begin_finetune(self) -> None:
        """Back-off fine-tuning starts from the training stage's best-dev theta AND phi, as the
        reference's ``mtrain.py --do_finetune`` loads ``best.pt`` and ``best_meta.pt`` (paper
        section 4.6), not from the last epoch. best_path holds them: no fine-tuning epoch has
        run yet, so it is still the training stage's best."""
        theta, phi, metadata = load_best(self.best_path)
        self.model.load_state_dict(theta)
        if self.rtn is not None:
            self.rtn.load_state_dict(phi)
        self.finetuner = BackoffFinetuner(self.learner)
        self.finetune_from = int(metadata["epoch"])
        if self.log is not None:
            self.log(f"fine-tuning from epoch {self.finetune_from}'s weights (best dev F1 {metadata['dev_f1']:.2f})")

    def _train_epoch(self, epoch: int) -> tuple[float, float | None, dict[str, float]]:
        train_losses, meta_losses = [], []
        steps_per_language = [0] * len(self.data.source_languages)
        examples_per_language = [0] * len(self.data.source_languages)
        data = self.data
        step = self._step_function(epoch)
        # A bar on a terminal only: elsewhere the epoch's own line follows (common/progress.py).
        plan = progress_of(
            self.batches.plan(epoch),
            total=self.steps_per_epoch,
            desc=f"epoch {epoch}/{self.config.total_epochs}",
            enabled=self.progress,
            quarters=False,
            leave=False,
        )
        for step_number, (language, source_indices, target_indices) in enumerate(plan, start=1):
            # ``language`` is a stream: one source language, or (mixed) all of them merged.
            source = self.batches.source_streams[language].batch(source_indices, self.device) if language is not None else None
            # The RTN set (and mixture logits) of the step's language when each source language has
            # its own (rtn_per_source, refused with mixed batches), else the one shared set: the
            # reference's merged loader always passes set 0.
            rtn_set = language if language is not None and self.config.rtn_per_source else 0
            losses = step(source, data.target_train.batch(target_indices, self.device), source_index=rtn_set)
            for loss, value in (("training loss", losses.train_loss), ("meta loss", losses.meta_loss)):
                if value is not None and not math.isfinite(value):
                    raise DivergedError(
                        divergence_message(self.config, loss, value, epoch, step_number, self.steps_per_epoch)
                    )
            if language is not None:
                steps_per_language[language] += 1
                for row in source_indices:
                    examples_per_language[self.batches.stream_languages[language][row]] += 1
                # The bandit's reward: how much this step lowered the meta (else training) loss.
                self.batches.sources.observe(language, losses.meta_loss if losses.meta_loss is not None else losses.train_loss)
            train_losses.append(losses.train_loss)
            if losses.meta_loss is not None:
                meta_losses.append(losses.meta_loss)
            plan.set_postfix(loss=f"{losses.train_loss:.4f}")
            if self._writer is not None:
                self._writer.check()  # a failed checkpoint write stops the run now, not epochs later
        mean = lambda values: sum(values) / len(values) if values else None  # noqa: E731
        return mean(train_losses), mean(meta_losses), self._source_metrics(steps_per_language, examples_per_language)

    def _source_metrics(self, steps_per_language: list[int], examples_per_language: list[int]) -> dict[str, float]:
        languages = self.data.source_languages
        if len(languages) < 2:
            return {}
        metrics = {f"source_examples/{language}": float(n) for language, n in zip(languages, examples_per_language)}
        if self.config.source_strategy != MIXED:  # a mixed batch belongs to no one language
            metrics.update({f"source_steps/{language}": float(n) for language, n in zip(languages, steps_per_language)})
        if self.config.source_strategy == "bandit":
            metrics.update(
                {f"source_weight/{language}": p for language, p in zip(languages, self.batches.sources.probabilities())}
            )
        return metrics

    def _mixture_weights(self) -> dict[str, float]:
        """softmax of the learned mixture logits (rtn_combine mixture), per source language."""
        if self.rtn is None or self.config.rtn_combine != "mixture":
            return {}
        names = self.data.source_languages if self.rtn.num_sources > 1 else None
        return self.rtn.mixture_report(names)

    # ---- checkpoints (policy: metaxl_tune/train/checkpoint_policy.py; files: metaxl_tune/train/checkpoint.py) ----

    def _state(self, epoch: int, history: list[EpochResult]) -> dict:
        return training_state(
            epoch, self.config, self.model, self.rtn, self.learner, [asdict(entry) for entry in history],
            finetune=self.finetuner.state_dict() if self.finetuner is not None else None,
            sources=self.batches.sources.state_dict(),
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
            # Inside the fine-tuning stage: theta and phi above are already the stage's own.
            self.finetuner = BackoffFinetuner(self.learner)
            self.finetuner.load_state_dict(state["finetune"])
        restore_rng_state(state["rng"])
        if "sources" in state:
            self.batches.sources.load_state_dict(state["sources"])
        history = [EpochResult(**entry) for entry in state["history"]]
        # The best weights that belong to this history: a newer best/ from epochs after the
        # checkpoint (lost with the interruption) must not survive the resume.
        if saved_best.is_file():
            if saved_best.resolve() != self.best_path.resolve():
                link_or_copy(saved_best, self.best_path)
        elif self.best_path.exists():
            keep_or_set_aside_best(self.best_path, history[-1].best_epoch if history else None)
        self.finetune_from = next((e.finetune_from_epoch for e in history if e.finetune_from_epoch is not None), None)
        return history

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
        # Temporary files a crash left between a write and its rename (only our own names).
        remove_stray_partials(checkpoint_dir, self.best_path.parent)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.config.dump(self.output_dir / "config.yaml")
        result = RunResult(self.config, history, data_sizes=self.data.sizes(),
                           eval_max_length=self.data.eval_max_length)
        policy = CheckpointPolicy(self.config.checkpoint_every, self.config.total_epochs)
        writer = self._writer = CheckpointWriter()

        try:
            for epoch in range(len(history) + 1, self.config.total_epochs + 1):
                started = time.perf_counter()
                reset_peak_memory(self.device)
                if self._stage(epoch) == "finetune" and self.finetuner is None:
                    writer.wait()  # the training stage's best-dev weights must be on disk first
                    self._begin_finetune()
                train_loss, meta_loss, source_metrics = self._train_epoch(epoch)
                # The previous epoch's checkpoint, written while this epoch trained, must be on
                # disk before this epoch counts: a failed write stops the run at its own epoch.
                writer.wait()
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
                    finetune_from_epoch=self.finetune_from if self._stage(epoch) == "finetune" else None,
                )
                history.append(entry)
                if improved:
                    save = functools.partial(save_best, self.best_path, self._best_bytes(entry))
                    writer.submit(_of_epoch(epoch, save))
                written = None
                if policy.due(epoch):
                    state_bytes, best_path = serialize_state(self._state(epoch, history)), self.best_path

                    def write_checkpoint(state_bytes=state_bytes, best_path=best_path) -> None:
                        # The state and its best weights are replaced together (checkpoint.save_checkpoint).
                        save_checkpoint(checkpoint_dir, state_bytes, best=best_path if best_path.is_file() else None)

                    writer.submit(_of_epoch(epoch, write_checkpoint))
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
        finally:
            self._writer = None
        writer.wait()
        if self.save_model and self.best_path.is_file():
            self._save_best()

        (self.output_dir / "results.json").write_text(json.dumps(result.to_dict(), indent=2), encoding="utf-8")
        return result
