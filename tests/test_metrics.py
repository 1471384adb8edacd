"""Metrics: whole-sentence NER predictions and entity F1."""

from __future__ import annotations

import pytest

from metaxl_tune.data import NER_LABELS
from metaxl_tune.metrics import ner_f1, sentence_predictions

ID = {tag: index for index, tag in enumerate(NER_LABELS)}


def test_words_without_a_scored_sub_token_are_predicted_outside():
    # Words 0, 1, 3 were scored; word 2 had no sub-token, word 4 was cut by max_length.
    assert sentence_predictions(5, [0, 1, 3], [ID["B-PER"], ID["I-PER"], ID["B-LOC"]]) == [
        ID["B-PER"], ID["I-PER"], ID["O"], ID["B-LOC"], ID["O"],
    ]


def test_a_cut_entity_counts_as_missed():
    gold = [[ID["B-PER"], ID["O"], ID["B-LOC"], ID["I-LOC"]]]
    predicted = [sentence_predictions(4, [0, 1], [ID["B-PER"], ID["O"]])]
    # One of two gold entities found, no false positive: P = 1, R = 1/2.
    assert ner_f1(gold, predicted) == pytest.approx(100 * 2 / 3)
