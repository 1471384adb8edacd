"""Evaluation metrics, in percent like the paper's tables.

NER: seqeval entity-level F1 (CoNLL style) over the words of whole sentences: each word is
predicted by its first sub-token, and a word that ``max_length`` cut off (or that has no
sub-token at all) is predicted O, so its gold entity counts as missed rather than vanishing.
SA: F1 of the positive class.
"""

from __future__ import annotations

from typing import Sequence

from seqeval.metrics import f1_score as entity_f1
from sklearn.metrics import f1_score

from metaxl_tune.data import NER_LABELS

OUTSIDE = NER_LABELS.index("O")


def ner_f1(gold: Sequence[Sequence[int]], predicted: Sequence[Sequence[int]]) -> float:
    to_tags = lambda rows: [[NER_LABELS[label] for label in row] for row in rows]  # noqa: E731
    # Plain floats: numpy scalars would not survive weights_only checkpoint loading.
    return float(100.0 * entity_f1(to_tags(gold), to_tags(predicted)))


def sentence_predictions(n_words: int, word_ids: Sequence[int], token_predictions: Sequence[int]) -> list[int]:
    """One label id per original word: the prediction of its first sub-token, O where none survived.

    ``word_ids[k]`` is the word that the k-th labelled sub-token starts; ``token_predictions``
    are the predictions at those positions, in the same order.
    """
    predicted = [OUTSIDE] * n_words
    for word, label in zip(word_ids, token_predictions, strict=True):
        predicted[word] = label
    return predicted


def positive_f1(gold: Sequence[int], predicted: Sequence[int]) -> float:
    return float(100.0 * f1_score(list(gold), list(predicted), pos_label=1, zero_division=0))
