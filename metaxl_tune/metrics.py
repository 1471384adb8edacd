"""Evaluation metrics, in percent like the paper's tables.

NER: seqeval entity-level F1 (CoNLL style) over words (first sub-tokens).
SA: F1 of the positive class.
"""

from __future__ import annotations

from typing import Sequence

from seqeval.metrics import f1_score as entity_f1
from sklearn.metrics import f1_score

from metaxl_tune.data import NER_LABELS


def ner_f1(gold: Sequence[Sequence[int]], predicted: Sequence[Sequence[int]]) -> float:
    to_tags = lambda rows: [[NER_LABELS[label] for label in row] for row in rows]  # noqa: E731
    # Plain floats: numpy scalars would not survive weights_only checkpoint loading.
    return float(100.0 * entity_f1(to_tags(gold), to_tags(predicted)))


def positive_f1(gold: Sequence[int], predicted: Sequence[int]) -> float:
    return float(100.0 * f1_score(list(gold), list(predicted), pos_label=1, zero_division=0))
