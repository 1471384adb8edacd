"""Scoring a model on a dev or test split: its predictions, then the task's F1 (metrics.py).

NER is scored over whole sentences: gold labels come from the original words, and the words
that ``eval_max_length`` cut off are predicted O.
"""

from __future__ import annotations

from typing import Any, Callable, ContextManager

import torch

from metaxl_tune.data.encoding import Batcher
from metaxl_tune.train.bilevel import IGNORE_INDEX
from metaxl_tune.train.metrics import ner_f1, positive_f1, sentence_predictions

EVAL_BATCH_SIZE = 64


@torch.inference_mode()
def evaluate_f1(
    model: torch.nn.Module, batcher: Batcher, *, task: str, device: torch.device,
    autocast: Callable[[], ContextManager[Any]],
) -> float:
    """F1 in percent of ``model`` on ``batcher``'s examples (``autocast``: the run's precision)."""
    model.eval()
    gold, predicted = [], []
    for start in range(0, len(batcher), EVAL_BATCH_SIZE):
        rows = range(start, min(start + EVAL_BATCH_SIZE, len(batcher)))
        batch = batcher.batch(rows, device)
        with autocast():
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        predictions = logits.argmax(-1).cpu()
        labels = batch["labels"].cpu()
        if task == "sa":
            gold += labels.tolist()
            predicted += predictions.tolist()
            continue
        # Whole sentences: gold from the original words, words cut by eval_max_length predicted O.
        for row, row_labels, row_predictions in zip(rows, labels, predictions):
            keep = row_labels != IGNORE_INDEX
            words = batcher.word_labels[row]
            gold.append(words)
            predicted.append(sentence_predictions(len(words), batcher.word_ids[row], row_predictions[keep].tolist()))
    return ner_f1(gold, predicted) if task == "ner" else positive_f1(gold, predicted)
