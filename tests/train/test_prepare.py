"""Run data preparation: the on-disk cache makes the second run skip reading and tokenizing."""

from __future__ import annotations

import pytest

import metaxl_tune.train.prepare as prepare_module
from metaxl_tune.config import RunConfig
from metaxl_tune.train.prepare import prepare_data


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

    monkeypatch.setattr(prepare_module, "open_splits", no_raw_reads)
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


def test_each_source_language_is_sampled_to_source_size(tmp_path):
    for language, count in (("tk", 12), ("en", 30), ("tr", 25)):
        _panx(tmp_path / "data" / language, count, prefix=language)
    data = prepare_data(config(data=str(tmp_path / "data"), source="en,related", source_size=20), tmp_path / "cache")
    assert data.source_languages == ["en", "tr"]
    assert data.sizes() == {"source": {"en": 20, "tr": 20}, "target_train": 12, "target_dev": 12, "target_test": 12}
    words = lambda batcher: {data.tokenizer.decode(ids[1:2]) for ids in batcher.input_ids}  # noqa: E731
    assert all(word.startswith("en") for word in words(data.source_trains[0]))
    assert all(word.startswith("tr") for word in words(data.source_trains[1]))


def _panx(folder, sentences: int, prefix: str = "") -> None:
    folder.mkdir(parents=True)
    text = "".join(f"{prefix}w{i}\tB-PER\n{prefix}x{i}\tO\n\n" for i in range(sentences))
    for split in ("train", "dev", "test"):
        (folder / split).write_text(text, encoding="utf-8")


def test_oversized_requests_warn_once_and_record_what_is_used(tmp_path):
    _panx(tmp_path / "data" / "tk", 12)
    _panx(tmp_path / "data" / "en", 30)
    messages: list[str] = []
    data = prepare_data(
        config(data=str(tmp_path / "data"), source="en", source_size=50, target_size=20),
        tmp_path / "cache",
        progress=messages.append,
    )
    warnings = [message for message in messages if message.startswith("warning:")]
    assert warnings == [
        "warning: source en train holds 30 examples, fewer than the 50 requested (--source-size); using 30",
        "warning: target tk train holds 12 examples, fewer than the 20 requested (--target-size); using 12",
    ]
    assert data.sizes() == {"source": {"en": 30}, "target_train": 12, "target_dev": 12, "target_test": 12}


def test_target_only_runs_without_a_source_folder(tmp_path):
    _panx(tmp_path / "data" / "tk", 12)
    data = prepare_data(config(data=str(tmp_path / "data"), source="en", method="target-only"), tmp_path / "cache")
    assert data.source_trains == [] and data.sizes()["source"] == {}
    # The tiny tokenizer saw only target text: every target word is in its vocabulary.
    vocabulary = data.tokenizer.get_vocab()
    assert {"w3", "x11"} <= set(vocabulary) and "<unk>" in vocabulary
    assert len(vocabulary) < 60


def test_a_method_with_sources_still_needs_the_source_folder(tmp_path):
    _panx(tmp_path / "data" / "tk", 12)
    with pytest.raises(ValueError, match="no folder for language 'en'"):
        prepare_data(config(data=str(tmp_path / "data"), source="en", method="jt"), tmp_path / "cache")


def test_the_loaders_note_on_the_sentiraama_split_reaches_the_log(tmp_path):
    folder = tmp_path / "data" / "te"
    folder.mkdir(parents=True)
    (folder / "product_pos.txt").write_text("".join(f"good {i}\n" for i in range(12)), encoding="utf-8")
    (folder / "product_neg.txt").write_text("".join(f"bad {i}\n" for i in range(12)), encoding="utf-8")
    messages: list[str] = []
    prepare_data(config(data=str(tmp_path / "data"), task="sa", target="te", method="target-only", source="en"),
                 tmp_path / "cache", progress=messages.append)
    assert [message for message in messages if "Sentiraama" in message] == [
        "te: Sentiraama files are not the ones the reference's split index names (its review lines are "
        "elsewhere): dealt split (seed 13), 8 train / 8 dev / 8 test"
    ]


def test_the_target_sample_is_what_the_data_seed_draws_from_the_whole_split(tmp_path):
    from metaxl_tune.data import load_splits, sample

    _panx(tmp_path / "data" / "tk", 300)
    run = config(data=str(tmp_path / "data"), method="target-only", target_size=15, data_seed=4)
    data = prepare_data(run, tmp_path / "cache")
    expected = sample(load_splits(run, "tk").train, 15, 4)
    assert [data.tokenizer.decode(ids[1:2]) for ids in data.target_train.input_ids] == [e.tokens[0] for e in expected]


def test_the_tiny_tokenizer_trains_on_a_bounded_sample(tmp_path, monkeypatch):
    import metaxl_tune.model.tokenizer as tokenizer_module

    monkeypatch.setattr(tokenizer_module, "TOKENIZER_SAMPLE", 50)
    _panx(tmp_path / "data" / "tk", 300)
    messages: list[str] = []
    data = prepare_data(config(data=str(tmp_path / "data"), method="target-only"), tmp_path / "cache",
                        progress=messages.append)
    assert "training the tiny tokenizer on 50 sentences (tk); cached for later runs" in messages
    assert len(data.target_dev) == 300  # dev and test are used whole
