"""Shared test helpers: tiny float64 models and hand-made batches (no data files needed)."""

from __future__ import annotations

import torch

from metaxl_tune.model.backbone import encoder_modules, load_backbone
from metaxl_tune.model.model_config import load_model_config
from metaxl_tune.model.rtn import RTNBank

VOCAB = 60


def tiny_model(*, task: str = "ner", num_labels: int = 7, seed: int = 0, dtype=torch.float64, dropout: float = 0.0,
               attention: str = "eager"):
    """The `tiny` architecture with dropout off, so two forwards are the same function. Eager
    attention by default: tests differentiate their own reference formulations twice."""
    torch.manual_seed(seed)
    config = load_model_config("tiny", max_length=16, vocab_size=VOCAB)
    config.hidden_dropout_prob = config.attention_probs_dropout_prob = dropout
    return load_backbone("tiny", config, task=task, num_labels=num_labels, attention=attention).to(dtype)


def attach_bank(
    model, layers, *, bottleneck: int = 8, gate: bool = False, detach_input: bool = False, seed: int = 1,
    num_sources: int = 1, residual: bool = True, init: str = "xavier-normal",
):
    torch.manual_seed(seed)
    bank = RTNBank(
        layers, model.config.hidden_size, bottleneck, gate=gate, detach_input=detach_input, num_sources=num_sources,
        residual=residual,
        init=init,
    )
    bank = bank.to(next(model.parameters()).dtype)
    bank.attach(*encoder_modules(model))
    return bank


def make_batch(size: int, *, seed: int, length: int = 9, task: str = "ner", num_labels: int = 7):
    """Token ids with right padding on some rows and -100 on specials, pads and sub-tokens."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, VOCAB, (size, length), generator=generator)
    ids[:, 0], ids[:, -1] = 0, 2
    mask = torch.ones(size, length, dtype=torch.long)
    mask[::2, -3:] = 0
    ids[mask == 0] = 1
    if task == "sa":
        labels = torch.randint(0, num_labels, (size,), generator=generator)
    else:
        labels = torch.randint(0, num_labels, (size, length), generator=generator)
        labels[:, 0] = labels[:, -1] = -100
        labels[mask == 0] = -100
        labels[:, 3] = -100  # a continuation sub-token
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def write_panx(data_dir, language: str, sentences: int) -> None:
    """A tiny panx-layout language folder: train/dev/test of two-token sentences, words
    prefixed by the language code (so every language has its own vocabulary)."""
    folder = data_dir / language
    folder.mkdir(parents=True, exist_ok=True)
    text = "".join(f"{language}w{i}\tB-PER\n{language}x{i % 7}\tO\n\n" for i in range(sentences))
    for split in ("train", "dev", "test"):
        (folder / split).write_text(text, encoding="utf-8")
