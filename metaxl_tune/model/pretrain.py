"""``--model tiny-pretrained``: a tiny XLM-R-shaped encoder pre-trained offline with masked
language modelling on unlabelled text of the synthetic languages.

MetaXL's premise (paper §1, Figure 1) is a *pre-trained* multilingual encoder whose source and
target representations lie apart; the RTN learns to move the source's towards the target's.
The random-init ``tiny`` model has no such representation to transform. This one does: one
WordPiece vocabulary and one encoder trained with the MLM objective (transformers'
``DataCollatorForLanguageModeling``: 15 % of tokens masked) on every synthetic language at once,
like XLM-R on CommonCrawl, with no labels and no parallel text.

It is built once, on first use (a progress bar), and cached under
``$METAXL_TUNE_CACHE/pretrained/<recipe key>/`` as an ordinary saved model (model + tokenizer),
so from then on it loads like a local Hugging Face model. The key covers the whole recipe (size,
steps, seed, languages, generator version), so a changed recipe builds a new model, and the
build is deterministic for a given seed. ``METAXL_TUNE_PRETRAIN_STEPS`` overrides the number of
steps (tests use a handful).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:  # torch loads when the model is built, not when the fit check reads the recipe
    import torch

from metaxl_tune.data.lexicon import GENERATOR_VERSION
from metaxl_tune.common.languages import SYNTHETIC_LANGUAGES
from metaxl_tune.common.progress import progress as progress_of
from metaxl_tune.model.model_config import TINY_ARCHITECTURE, ModelError, ModelShape

PRETRAINED = "tiny-pretrained"
STEPS_ENV = "METAXL_TUNE_PRETRAIN_STEPS"
RECIPE_FILE = "recipe.json"
# Every language a synthetic run can use (the order is part of the recipe's cache key).
LANGUAGES = SYNTHETIC_LANGUAGES


@dataclass(frozen=True)
class Recipe:
    """Everything that determines the pre-trained model; its digest is the cache key."""

    hidden_size: int = TINY_ARCHITECTURE["hidden_size"]
    num_hidden_layers: int = TINY_ARCHITECTURE["num_hidden_layers"]
    num_attention_heads: int = TINY_ARCHITECTURE["num_attention_heads"]
    intermediate_size: int = TINY_ARCHITECTURE["intermediate_size"]
    vocab_size: int = 8000
    """Frequent whole words plus characters (see tokenizer.build_word_tokenizer)."""
    max_length: int = 256
    """Longest input the model accepts (position embeddings); pre-training sentences are shorter."""
    sentences_per_language: int = 2000
    steps: int = 1000
    batch_size: int = 32
    lr: float = 1e-3
    warmup: float = 0.06
    mlm_probability: float = 0.15
    seed: int = 0
    languages: tuple[str, ...] = LANGUAGES
    generator_version: str = GENERATOR_VERSION

    def key(self) -> str:
        text = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def default_recipe() -> Recipe:
    """The shipped recipe, with ``$METAXL_TUNE_PRETRAIN_STEPS`` applied (a smaller budget)."""
    steps = os.environ.get(STEPS_ENV)
    if steps is None:
        return Recipe()
    if not steps.isdigit() or int(steps) < 1:
        raise ModelError(f"{STEPS_ENV}={steps}: must be a positive number of pre-training steps")
    return dataclasses.replace(Recipe(), steps=int(steps))


def pretrained_dir(cache_dir: Path, recipe: Recipe) -> Path:
    return Path(cache_dir) / "pretrained" / f"{PRETRAINED}-{recipe.key()}"


def check_max_length(max_length: int, recipe: Recipe | None = None) -> None:
    recipe = recipe or default_recipe()
    if max_length > recipe.max_length:
        raise ModelError(f"max_length: tiny-pretrained takes at most {recipe.max_length} tokens (got {max_length})")


def ensure_pretrained(
    cache_dir: Path, recipe: Recipe | None = None, *, progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> Path:
    """The cached model directory for ``recipe``, pre-training it first if it is not there yet."""
    recipe = recipe or default_recipe()
    directory = pretrained_dir(cache_dir, recipe)
    if (directory / RECIPE_FILE).is_file():
        return directory
    if log is not None:
        log(f"pre-training tiny-pretrained once ({recipe.steps} MLM steps on {len(recipe.languages)} "
            f"synthetic languages); cached in {directory}")
    # Parallel trials may build at once: each writes privately and renames into place.
    partial = directory.with_name(f"{directory.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.partial")
    build(recipe, partial, progress=progress)
    try:
        partial.rename(directory)
    except OSError:
        shutil.rmtree(partial, ignore_errors=True)
    return directory


def pretrained_model(config, cache_dir: Path, *, progress: bool = True, log: Callable[[str], None] | None = None) -> str:
    """The model name to load for a RunConfig: the cached directory for tiny-pretrained, else as given."""
    if config.model != PRETRAINED:
        return config.model
    recipe = default_recipe()
    check_max_length(config.max_length, recipe)
    return str(ensure_pretrained(cache_dir, recipe, progress=progress, log=log))


def corpus(recipe: Recipe) -> list[str]:
    from metaxl_tune.data.synthetic import unlabelled_text

    return [text for code in recipe.languages
            for text in unlabelled_text(code, recipe.sentences_per_language, seed=recipe.seed)]


def recipe_shape(recipe: Recipe) -> ModelShape:
    """The shape of the model ``recipe`` builds (``build``'s config), known before it is built:
    the fit checks read it without building or loading the model."""
    # XLM-R offsets positions by padding_idx + 1: max_length tokens need max_length + 2 rows.
    return ModelShape(recipe.num_hidden_layers, recipe.hidden_size, max_position_embeddings=recipe.max_length + 2)


def build(recipe: Recipe, directory: Path, *, progress: bool = True) -> dict[str, float]:
    """Train the tokenizer and the MLM encoder of ``recipe``; save both (and the recipe) to ``directory``."""
    import torch
    from transformers import AutoModelForMaskedLM, DataCollatorForLanguageModeling, XLMRobertaConfig
    from transformers import logging as hf_logging

    from metaxl_tune.model.tokenizer import build_word_tokenizer

    texts = corpus(recipe)
    tokenizer = build_word_tokenizer(texts, directory, max_length=recipe.max_length, vocab_size=recipe.vocab_size)
    encoded = tokenizer(texts, truncation=True, max_length=recipe.max_length)["input_ids"]

    torch.manual_seed(recipe.seed)
    config = XLMRobertaConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=recipe_shape(recipe).max_position_embeddings,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        hidden_size=recipe.hidden_size, num_hidden_layers=recipe.num_hidden_layers,
        num_attention_heads=recipe.num_attention_heads, intermediate_size=recipe.intermediate_size,
        hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
    )
    model = AutoModelForMaskedLM.from_config(config, attn_implementation="eager")
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=recipe.mlm_probability, seed=recipe.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=0.01)
    warmup = max(1, int(recipe.warmup * recipe.steps))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, max(0.0, (recipe.steps - step) / max(1, recipe.steps - warmup)))
    )
    # Batch order is a pure function of the seed: shuffled epochs over the whole corpus.
    generator = torch.Generator().manual_seed(recipe.seed)
    order: list[int] = []
    model.train()
    losses: list[float] = []
    # One thread: on a shared CPU, more threads mostly wait on each other (measured 3-10x slower
    # per step at load 11 on 2 cores); the model is too small to gain from more.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    bar = progress_of(range(recipe.steps), total=recipe.steps, desc="pre-training tiny-pretrained", enabled=progress)
    for _ in bar:
        if len(order) < recipe.batch_size:
            order += torch.randperm(len(encoded), generator=generator).tolist()
        batch_ids, order = order[: recipe.batch_size], order[recipe.batch_size:]
        batch = collator([{"input_ids": encoded[index]} for index in batch_ids])
        loss = _mlm_loss(model, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        if len(losses) % 50 == 0:
            bar.set_postfix(mlm_loss=f"{sum(losses[-50:]) / 50:.3f}")
    torch.set_num_threads(threads)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        model.save_pretrained(directory)
    finally:
        hf_logging.set_verbosity(verbosity)
    summary = {"final_mlm_loss": sum(losses[-50:]) / len(losses[-50:]), "steps": recipe.steps}
    (directory / RECIPE_FILE).write_text(json.dumps({"recipe": dataclasses.asdict(recipe), **summary}, indent=2))
    return summary


def _mlm_loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Cross-entropy on the masked positions only: the same loss as the model's own, without
    projecting the ~85 % unmasked positions onto the vocabulary (most of a tiny model's step)."""
    hidden = model.base_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    labels = batch["labels"]
    masked = labels != -100
    logits = model.lm_head(hidden[masked])
    import torch

    return torch.nn.functional.cross_entropy(logits, labels[masked])
