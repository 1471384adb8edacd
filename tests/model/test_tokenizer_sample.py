"""The tiny tokenizer trains on a bounded, seeded sample of each language's sentences."""

from __future__ import annotations

import pytest

import metaxl_tune.model.tokenizer as tokenizer_module
from metaxl_tune.data import NerExample, SplitStreams
from metaxl_tune.data.streams import ListStream
from metaxl_tune.model.tokenizer import tokenizer_texts


def language(name: str, train: int, held_out: int = 5) -> SplitStreams:
    def split(kind: str, count: int) -> ListStream:
        return ListStream(kind, [NerExample((f"{name}{kind}{i}", "x"), ("O", "O")) for i in range(count)])

    return SplitStreams(split("train", train), split("dev", held_out), split("test", held_out))


@pytest.fixture
def cap_of_100(monkeypatch):
    monkeypatch.setattr(tokenizer_module, "TOKENIZER_SAMPLE", 100)


def test_a_language_within_the_cap_gives_every_sentence_in_order():
    texts = tokenizer_texts([language("a", 20)])
    assert texts == [f"atrain{i} x" for i in range(20)] + [f"adev{i} x" for i in range(5)] + [f"atest{i} x" for i in range(5)]


def test_a_larger_language_gives_a_seeded_sample_of_the_cap_in_file_order(cap_of_100):
    big = language("b", 10_000)
    texts = tokenizer_texts([big])
    assert len(texts) == 100 and len(set(texts)) == 100
    assert texts == tokenizer_texts([language("b", 10_000)])  # seeded: the same every time
    order = [(text[1:].rstrip("0123456789 x"), int(text.split()[0].lstrip("btraindevst"))) for text in texts]
    assert order == sorted(order, key=lambda item: (("train", "dev", "test").index(item[0]), item[1]))


def test_each_language_is_capped_on_its_own(cap_of_100):
    texts = tokenizer_texts([language("a", 30), language("b", 5000)])
    assert sum(text.startswith("a") for text in texts) == 40 and sum(text.startswith("b") for text in texts) == 100
