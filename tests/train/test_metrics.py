"""Metrics: whole-sentence NER predictions and entity F1."""

from __future__ import annotations

import pytest

from metaxl_tune.data import NER_LABELS
from metaxl_tune.train.metrics import ner_f1, positive_f1, sentence_predictions

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


@pytest.mark.filterwarnings("ignore:F-score is ill-defined")
def test_entity_f1_equals_seqeval_on_random_tag_sequences():
    import random

    from seqeval.metrics import f1_score

    rng = random.Random(0)
    for _ in range(300):
        # Any tag may follow any other: stray I- tags, type switches inside a chunk, empty sentences.
        sentences = [[rng.randrange(len(NER_LABELS)) for _ in range(rng.randrange(0, 9))] for _ in range(rng.randrange(1, 5))]
        guesses = [[rng.randrange(len(NER_LABELS)) if rng.random() < 0.5 else tag for tag in row] for row in sentences]
        tags = lambda rows: [[NER_LABELS[label] for label in row] for row in rows]  # noqa: E731
        assert ner_f1(sentences, guesses) == pytest.approx(100 * f1_score(tags(sentences), tags(guesses)), abs=1e-12)


def test_positive_f1_equals_scikit_learn():
    import random

    from sklearn.metrics import f1_score

    rng = random.Random(1)
    for _ in range(200):
        n = rng.randrange(1, 12)
        gold, predicted = [rng.randrange(2) for _ in range(n)], [rng.randrange(2) for _ in range(n)]
        expected = 100 * f1_score(gold, predicted, pos_label=1, zero_division=0)
        assert positive_f1(gold, predicted) == pytest.approx(expected, abs=1e-12)


def test_scoring_imports_neither_seqeval_nor_scikit_learn():
    import subprocess
    import sys

    code = "import sys, metaxl_tune.train.metrics; print(sorted({'seqeval', 'sklearn', 'scipy'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
