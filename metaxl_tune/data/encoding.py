"""Sub-word encoding with an on-disk cache, and batching with dynamic padding.

NER labels go on the first sub-token of each word and -100 on the rest (and on special tokens),
so the loss and the evaluation see one prediction per word. NER rows also keep every word's gold
tag and the word index of each labelled sub-token, so evaluation scores whole sentences even when
the encoding length (``max_length`` for training, ``eval_max_length`` for dev/test) cut words
off. Encoded splits are stored with
`datasets` under a key made of the raw data's fingerprint, the tokenizer's content and the
max length: the second run, and every trial of a search, loads them memory-mapped.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import datasets
from transformers import DataCollatorForTokenClassification, DataCollatorWithPadding, PreTrainedTokenizerFast

from metaxl_tune.data import NER_LABELS, NerExample, SaExample
from metaxl_tune.common.interruptible import run_interruptibly

if TYPE_CHECKING:  # the collators make tensors (importing torch) only when a run batches
    import torch

IGNORE_INDEX = -100
# Part of every cache key: bumped whenever the encoded columns change, so a cache written in an
# older layout is never read (2: NER rows gained word_labels and word_ids).
ENCODING_VERSION = 2
_NER_LABEL_IDS = {tag: index for index, tag in enumerate(NER_LABELS)}


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerFast) -> str:
    """Content hash of the tokenizer (vocabulary, normaliser, pre-tokeniser, post-processor)."""
    return hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode("utf-8")).hexdigest()[:16]


def cache_key(**parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:20]


def encode_ner(examples: Sequence[NerExample], tokenizer: PreTrainedTokenizerFast, max_length: int) -> dict:
    encoded = tokenizer(
        [list(example.tokens) for example in examples],
        is_split_into_words=True,
        truncation=True,
        max_length=max_length,
    )
    all_labels, all_word_ids = [], []
    for index, example in enumerate(examples):
        labels, word_ids, previous_word = [], [], None
        for word in encoded.word_ids(index):
            first_piece = word is not None and word != previous_word
            labels.append(_NER_LABEL_IDS[example.tags[word]] if first_piece else IGNORE_INDEX)
            if first_piece:
                word_ids.append(word)
            previous_word = word
        all_labels.append(labels)
        all_word_ids.append(word_ids)
    return {
        "input_ids": encoded["input_ids"],
        "labels": all_labels,
        # Whole-sentence gold, and the word each labelled position (in order) predicts.
        "word_labels": [[_NER_LABEL_IDS[tag] for tag in example.tags] for example in examples],
        "word_ids": all_word_ids,
    }


def encode_sa(examples: Sequence[SaExample], tokenizer: PreTrainedTokenizerFast, max_length: int) -> dict:
    encoded = tokenizer([example.text for example in examples], truncation=True, max_length=max_length)
    return {"input_ids": encoded["input_ids"], "labels": [example.label for example in examples]}


def cached_encoding(
    directory: Path, build: Callable[[], dict], *, progress: Callable[[str], None] | None = None
) -> datasets.Dataset:
    """Load the encoded split at ``directory`` or build and save it there.

    Parallel trials on one node may build the same split at once: each writes a private
    folder and renames it into place; whoever loses the race uses the winner's copy.
    """
    if not (directory / "dataset_info.json").is_file():
        if progress:
            progress(f"tokenizing into {directory}")
        partial = directory.with_name(f"{directory.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.partial")
        # One tokenizer call over the whole split: native, so run where Ctrl-C can end it.
        datasets.Dataset.from_dict(run_interruptibly(build, name="tokenizing")).save_to_disk(str(partial))
        try:
            partial.rename(directory)
        except OSError:
            shutil.rmtree(partial, ignore_errors=True)
    return datasets.load_from_disk(str(directory))


class Batcher:
    """Turns index lists into padded tensor batches (padding only to the batch's longest row)."""

    def __init__(self, dataset: datasets.Dataset, tokenizer: PreTrainedTokenizerFast, task: str):
        # Materialised once: per-step row access on the memory-mapped table costs more than the rows.
        self.input_ids: list[list[int]] = dataset["input_ids"]
        self.labels: list = dataset["labels"]
        # NER only: each sentence's gold tag per original word, and the word index of each
        # labelled sub-token (for scoring whole sentences; see metrics.sentence_predictions).
        names = dataset.column_names
        self.word_labels: list[list[int]] | None = dataset["word_labels"] if "word_labels" in names else None
        self.word_ids: list[list[int]] | None = dataset["word_ids"] if "word_ids" in names else None
        self.collate = (
            DataCollatorForTokenClassification(tokenizer, label_pad_token_id=IGNORE_INDEX, return_tensors="pt")
            if task == "ner"
            else DataCollatorWithPadding(tokenizer, return_tensors="pt")
        )

    @classmethod
    def concatenate(cls, batchers: Sequence["Batcher"]) -> "Batcher":
        """One set holding every batcher's rows, in order (the rows of ``batchers[0]`` first), as
        the reference's ``mtrain.py: merge_data`` concatenates the source languages' samples.
        The rows are shared, not copied; the first batcher's collator pads them."""
        merged = cls.__new__(cls)
        merged.input_ids = [row for batcher in batchers for row in batcher.input_ids]
        merged.labels = [label for batcher in batchers for label in batcher.labels]
        has_words = all(batcher.word_labels is not None for batcher in batchers)
        merged.word_labels = [row for batcher in batchers for row in batcher.word_labels] if has_words else None
        merged.word_ids = [row for batcher in batchers for row in batcher.word_ids] if has_words else None
        merged.collate = batchers[0].collate
        return merged

    def __len__(self) -> int:
        return len(self.input_ids)

    def batch(self, indices: Sequence[int], device: torch.device) -> dict[str, torch.Tensor]:
        features = [{"input_ids": self.input_ids[i], "labels": self.labels[i]} for i in indices]
        batch = self.collate(features)
        return {key: batch[key].to(device) for key in ("input_ids", "attention_mask", "labels")}
