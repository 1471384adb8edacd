"""Evaluation metrics, in percent like the paper's tables.

NER: entity-level micro F1 (CoNLL style, seqeval's default mode) over the words of whole
sentences: each word is predicted by its first sub-token, and a word that ``max_length`` cut off
(or that has no sub-token at all) is predicted O, so its gold entity counts as missed rather than
vanishing. SA: F1 of the positive class.

Both are restated here rather than imported from seqeval and scikit-learn: those pull in SciPy,
about 0.8 CPU-seconds of imports that every trial's worker process would pay before its first
step (bench/search_overhead.py). tests/train/test_metrics.py pins them to seqeval's and scikit-learn's
results.
"""

from __future__ import annotations

from typing import Iterator, Sequence

from metaxl_tune.data import NER_LABELS

OUTSIDE = NER_LABELS.index("O")


def _split(tag: str) -> tuple[str, str]:
    """("B", "PER") from "B-PER"; ("O", "") from "O"."""
    if tag == "O":
        return "O", ""
    prefix, _, kind = tag.partition("-")
    return prefix, kind


def _chunk_ends(previous: str, tag: str, previous_kind: str, kind: str) -> bool:
    """conlleval's endOfChunk, as seqeval applies it in its default (non-strict) mode."""
    return (previous in ("E", "S")
            or (previous in ("B", "I") and tag in ("B", "S", "O"))
            or (previous not in ("O", ".") and previous_kind != kind))


def _chunk_starts(previous: str, tag: str, previous_kind: str, kind: str) -> bool:
    """conlleval's startOfChunk."""
    return (tag in ("B", "S")
            or (previous in ("E", "S", "O") and tag in ("E", "I"))
            or (tag not in ("O", ".") and previous_kind != kind))


def entities(sentences: Sequence[Sequence[str]]) -> Iterator[tuple[int, str, int, int]]:
    """(sentence, type, first word, last word) of every chunk. An I- tag after O or after another
    type opens a chunk, as conlleval reads it."""
    for index, tags in enumerate(sentences):
        previous, previous_kind, start = "O", "", 0
        for position, tag in enumerate([*tags, "O"]):  # a closing O ends the last chunk
            prefix, kind = _split(tag)
            if _chunk_ends(previous, prefix, previous_kind, kind):
                yield index, previous_kind, start, position - 1
            if _chunk_starts(previous, prefix, previous_kind, kind):
                start = position
            previous, previous_kind = prefix, kind


def _f1(correct: int, predicted: int, true: int) -> float:
    """F1 in percent; 0 when nothing was predicted or nothing was there to find."""
    if correct == 0:
        return 0.0
    precision, recall = correct / predicted, correct / true
    return 100.0 * 2 * precision * recall / (precision + recall)


def ner_f1(gold: Sequence[Sequence[int]], predicted: Sequence[Sequence[int]]) -> float:
    to_tags = lambda rows: [[NER_LABELS[label] for label in row] for row in rows]  # noqa: E731
    true, found = set(entities(to_tags(gold))), set(entities(to_tags(predicted)))
    return _f1(len(true & found), len(found), len(true))


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
    """F1 of label 1 (scikit-learn's binary f1_score with zero_division=0)."""
    pairs = list(zip(gold, predicted, strict=True))
    hits = sum(1 for g, p in pairs if g == 1 and p == 1)
    return _f1(hits, sum(1 for _, p in pairs if p == 1), sum(1 for g, _ in pairs if g == 1))
