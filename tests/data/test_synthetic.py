"""The synthetic generator: deterministic, language-specific, valid, fast, and transfer is learnable."""

from __future__ import annotations

import time
from collections import Counter, defaultdict

import pytest
from seqeval.metrics import f1_score as entity_f1
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score

from metaxl_tune.config import RunConfig
from metaxl_tune.data import NER_LABELS, load_splits, sample
from metaxl_tune.data.synthetic import _generate

NER = RunConfig(data="synthetic")
SA = RunConfig(data="synthetic", task="sa")


def test_same_language_gives_the_same_data_after_regeneration():
    first = load_splits(NER, "tk")
    _generate.cache_clear()
    assert load_splits(NER, "tk") == first


@pytest.mark.parametrize(("config", "train"), [(NER, 20000), (SA, 5000)])
def test_split_sizes(config, train):
    splits = load_splits(config, "qu")
    assert (len(splits.train), len(splits.dev), len(splits.test)) == (train, 200, 200)


def test_a_new_language_generates_fast():
    # CPU time, so that other processes on a busy machine do not make the test flaky.
    start = time.process_time()
    load_splits(NER, "xmf")
    assert time.process_time() - start < 2


def test_languages_share_entity_names_but_few_other_words():
    # Years are written alike everywhere, like names; they are left out of both counts.
    def vocabulary(language, entity):
        return {
            token
            for example in load_splits(NER, language).train[:2000]
            for token, tag in zip(example.tokens, example.tags)
            if (tag != "O") == entity and not token.isdigit()
        }

    names = len(vocabulary("en", True) & vocabulary("tk", True)) / len(vocabulary("tk", True))
    words = len(vocabulary("en", False) & vocabulary("tk", False)) / len(vocabulary("tk", False))
    assert names > 0.6 and words < 0.2


def test_ner_tags_are_valid_bio_and_sentences_are_8_to_20_tokens():
    for example in load_splits(NER, "mi").train[:5000]:
        assert 8 <= len(example.tokens) == len(example.tags) <= 20
        previous = "O"
        for tag in example.tags:
            assert tag in NER_LABELS
            assert not tag.startswith("I-") or previous[2:] == tag[2:]
            previous = tag


def test_every_entity_type_occurs():
    counts = Counter(tag for example in load_splits(NER, "gn").dev for tag in example.tags)
    assert all(counts[f"B-{kind}"] > 50 for kind in ("PER", "ORG", "LOC"))


def test_reviews_are_balanced_and_6_to_25_words():
    splits = load_splits(SA, "te")
    assert sum(example.label for example in splits.dev) == 100
    assert all(6 <= len(example.text.replace(" .", "").split()) <= 25 for example in splits.train)


def majority_tagger_f1(train, dev):
    counts = defaultdict(Counter)
    for example in train:
        for token, tag in zip(example.tokens, example.tags):
            counts[token][tag] += 1
    best = {token: tags.most_common(1)[0][0] for token, tags in counts.items()}
    predicted = [[best.get(token, "O") for token in example.tokens] for example in dev]
    return entity_f1([list(example.tags) for example in dev], predicted)


def bag_of_words_f1(train, dev):
    vectorizer = CountVectorizer(token_pattern=r"\S+", ngram_range=(1, 2))
    features = vectorizer.fit_transform([example.text for example in train])
    model = LogisticRegression(max_iter=1000).fit(features, [example.label for example in train])
    predicted = model.predict(vectorizer.transform([example.text for example in dev]))
    return f1_score([example.label for example in dev], predicted)


def test_ner_transfer_is_learnable():
    source, target = load_splits(NER, "en"), load_splits(NER, "tk")
    target_train = sample(target.train, 100, seed=42)
    alone = majority_tagger_f1(target_train, target.dev)
    joint = majority_tagger_f1(sample(source.train, 2000, seed=42) + target_train, target.dev)
    assert (round(alone, 3), round(joint, 3)) == (0.099, 0.532)


def test_sa_transfer_is_learnable():
    source, target = load_splits(SA, "en"), load_splits(SA, "tk")
    target_train = sample(target.train, 100, seed=42)
    alone = bag_of_words_f1(target_train, target.dev)
    joint = bag_of_words_f1(sample(source.train, 1000, seed=42) + target_train, target.dev)
    assert (alone, joint) == pytest.approx((0.628, 0.667), abs=0.01)


def test_a_language_without_a_grammar_is_refused_naming_the_ones_there_are():
    from metaxl_tune.common.languages import SYNTHETIC_LANGUAGES
    from metaxl_tune.data import DataError
    from metaxl_tune.data.synthetic import synthetic_splits

    with pytest.raises(DataError) as error:
        synthetic_splits("ner", "xx")
    assert str(error.value).startswith(f"--data synthetic has no grammar for 'xx'; its languages are "
                                       f"{', '.join(sorted(SYNTHETIC_LANGUAGES))}")
    assert len(SYNTHETIC_LANGUAGES) == 17 and {"en", "tk", "tr", "fa", "te"} <= set(SYNTHETIC_LANGUAGES)
