"""Run.evaluate scores NER on whole sentences: words that eval_max_length cut off count as predicted O."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from seqeval.metrics import f1_score
from torch import nn

from metaxl_tune.config import RunConfig
from metaxl_tune.data import NER_LABELS, load_splits
from metaxl_tune.train.trainer import Run


class LookupTagger(nn.Module):
    """A tagger whose prediction for a sub-token depends on its id only: deterministic and
    good enough on the visible words that a truncated entity changes the score."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.register_buffer("table", table)

    def forward(self, input_ids, attention_mask):
        return SimpleNamespace(logits=F.one_hot(self.table[input_ids], len(NER_LABELS)).float())


def test_ner_f1_equals_seqeval_on_the_untruncated_sentences(tmp_path, shared_cache):
    config = RunConfig(model="tiny", data="synthetic", task="ner", target="tk", source="related", method="jt",
                       epochs=1, source_size=32, batch_size=16, max_length=12,
                       eval_max_length=12)
    run = Run(config, tmp_path, cache_dir=shared_cache, progress=False)
    dev = run.data.target_dev
    table = torch.zeros(len(run.data.tokenizer), dtype=torch.long)
    for ids, labels in zip(dev.input_ids, dev.labels):
        for token_id, label in zip(ids, labels):
            if label != -100:
                table[token_id] = label
    run.model = LookupTagger(table)

    # Independently: tokenize the raw sentences, predict each surviving word by its first
    # sub-token, every other word O, and score against the full gold tags with seqeval.
    sentences = load_splits(config, "tk").dev
    encoded = run.data.tokenizer([list(s.tokens) for s in sentences], is_split_into_words=True,
                                 truncation=True, max_length=config.eval_max_length)
    gold, predicted, visible_gold, cut_entities = [], [], [], 0
    for index, sentence in enumerate(sentences):
        tags, seen = ["O"] * len(sentence.tokens), set()
        for position, word in enumerate(encoded.word_ids(index)):
            if word is not None and word not in seen:
                seen.add(word)
                tags[word] = NER_LABELS[int(table[encoded["input_ids"][index][position]])]
        gold.append(list(sentence.tags))
        predicted.append(tags)
        visible_gold.append([tag if word in seen else "O" for word, tag in enumerate(sentence.tags)])
        cut_entities += sum(tag.startswith("B-") for word, tag in enumerate(sentence.tags) if word not in seen)
    expected = 100 * f1_score(gold, predicted)

    assert cut_entities > 0  # eval_max_length really cuts entities off
    assert expected != pytest.approx(100 * f1_score(visible_gold, predicted))  # so truncation matters
    assert run.evaluate(dev) == pytest.approx(expected, abs=1e-9)


def test_dev_and_test_are_encoded_at_eval_max_length_and_training_at_max_length(tmp_path, shared_cache):
    config = RunConfig(model="tiny", data="synthetic", task="ner", target="tk", method="target-only",
                       epochs=1, batch_size=16, max_length=8, eval_max_length=10)
    data = Run(config, tmp_path, cache_dir=shared_cache, progress=False).data

    assert max(map(len, data.target_train.input_ids)) == 8
    # Long dev/test sentences are no longer cut at the training length.
    assert max(map(len, data.target_dev.input_ids)) == max(map(len, data.target_test.input_ids)) == 10
    assert data.eval_max_length == 10


def test_an_eval_length_past_the_model_is_capped_with_one_notice_and_recorded(tmp_path, shared_cache):
    # NER's default 512 against tiny's position table (max_length 12: 14 positions).
    config = RunConfig(model="tiny", data="synthetic", task="ner", target="tk", method="target-only",
                       epochs=1, batch_size=16, max_length=12)
    logged = []
    run = Run(config, tmp_path, cache_dir=shared_cache, progress=False, log=logged.append)
    run.fit()

    notices = [line for line in logged if line.startswith("notice:")]
    assert notices == [
        "notice: --eval-max-length 512 is more than model tiny takes; dev and test are encoded at 14 sub-words"
    ]
    assert max(map(len, run.data.target_dev.input_ids)) == 14
    results = json.loads((tmp_path / "results.json").read_text())
    assert (results["config"]["eval_max_length"], results["eval_max_length"]) == (512, 14)
