"""Run data preparation: the on-disk cache makes the second run skip reading and tokenizing."""

from __future__ import annotations

import pytest

import metaxl_tune.data.prepare as prepare_module
from metaxl_tune.config import RunConfig
from metaxl_tune.data.prepare import prepare_data


def config(**changes) -> RunConfig:
    values = dict(model="tiny", data="synthetic", task="ner", target="tk", source="related", source_size=50,
                  target_size=20, max_length=32)
    return RunConfig(**{**values, **changes})


def test_second_preparation_reads_and_tokenizes_nothing(tmp_path, monkeypatch):
    messages: list[str] = []
    first = prepare_data(config(), tmp_path, progress=messages.append)
    assert sum("tokenizing" in message for message in messages) == 4  # target train/dev/test, source train

    def no_raw_reads(*_args, **_kwargs):
        raise AssertionError("raw data read despite a warm cache")

    monkeypatch.setattr(prepare_module, "load_splits", no_raw_reads)
    messages.clear()
    second = prepare_data(config(), tmp_path, progress=messages.append)
    assert messages == []
    assert second.target_train.input_ids == first.target_train.input_ids
    assert second.source_train.labels == first.source_train.labels


def test_samples_follow_the_data_seed(tmp_path):
    a = prepare_data(config(data_seed=1), tmp_path)
    b = prepare_data(config(data_seed=1), tmp_path)
    c = prepare_data(config(data_seed=2), tmp_path)
    assert a.target_train.input_ids == b.target_train.input_ids
    assert a.target_train.input_ids != c.target_train.input_ids
    assert len(a.target_train) == 20 and len(a.source_train) == 50


def test_ner_labels_sit_on_first_sub_tokens_only(tmp_path):
    data = prepare_data(config(), tmp_path)
    tokenizer = data.tokenizer
    for ids, labels in zip(data.target_dev.input_ids[:20], data.target_dev.labels[:20]):
        assert labels[0] == -100 and labels[-1] == -100  # <s> and </s>
        for token_id, label in zip(ids, labels):
            if tokenizer.convert_ids_to_tokens(token_id).startswith("##"):
                assert label == -100


def test_target_only_needs_no_source_sample(tmp_path):
    assert prepare_data(config(method="target-only"), tmp_path).source_train is None


def test_unknown_language_directory_fails_before_tokenizing(tmp_path):
    (tmp_path / "data" / "tk").mkdir(parents=True)
    with pytest.raises(ValueError, match="tk"):
        prepare_data(config(data=str(tmp_path / "data")), tmp_path / "cache")


def test_ner_rows_keep_every_word_and_the_word_of_each_labelled_sub_token(tmp_path):
    data = prepare_data(config(max_length=12), tmp_path)
    dev = data.target_dev
    for labels, word_labels, word_ids in zip(dev.labels, dev.word_labels, dev.word_ids):
        scored = [label for label in labels if label != -100]
        assert word_ids == sorted(set(word_ids)) and len(word_ids) == len(scored)
        assert scored == [word_labels[word] for word in word_ids]
    assert any(len(words) > len(ids) for words, ids in zip(dev.word_labels, dev.word_ids))  # some cut


def test_a_cache_in_an_older_encoding_layout_is_not_read(tmp_path, monkeypatch):
    monkeypatch.setattr(prepare_module, "ENCODING_VERSION", 1)
    prepare_data(config(), tmp_path)
    monkeypatch.undo()
    messages: list[str] = []
    prepare_data(config(), tmp_path, progress=messages.append)
    assert sum("tokenizing" in message for message in messages) == 4
