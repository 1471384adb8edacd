"""SA data in a local directory: jsonl/tsv/csv splits in every label format, and Sentiraama."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from metaxl_tune.config import RunConfig
from metaxl_tune.data import DataError, SaExample, load_splits
from metaxl_tune.data.sentiraama import reference_index


def jsonl(*rows):
    return "".join(json.dumps(row) + "\n" for row in rows)


@pytest.fixture
def sa(tmp_path, write):
    """Writes <tmp>/fa/{train,dev,test}<suffix> (dev and test default to train) and returns a config."""

    def make(train, dev=None, test=None, suffix=".jsonl", dev_name="dev", **fields):
        for name, text in (("train", train), (dev_name, dev or train), ("test", test or train)):
            write(tmp_path / "fa" / f"{name}{suffix}", text)
        return RunConfig(data=str(tmp_path), task="sa", target="fa", **fields)

    return make


def test_marc_stars_are_detected_and_3_is_dropped(sa):
    train = jsonl(*({"review_body": f"r{stars}", "stars": stars} for stars in range(1, 6)))
    splits = load_splits(sa(train), "fa")
    assert splits.train == [SaExample("r1", 0), SaExample("r2", 0), SaExample("r4", 1), SaExample("r5", 1)]


def test_sentipers_polarity_in_tsv_is_detected_and_0_is_dropped(sa):
    train = "sentence\tpolarity\nbad\t-2\nmeh\t-1\nok\t0\ngood\t+1\ngreat\t2\n"
    splits = load_splits(sa(train, suffix=".tsv"), "fa")
    assert [example.label for example in splits.train] == [0, 0, 1, 1]


def test_binary_words_in_csv_are_detected_in_any_case(sa):
    train = 'text,label\n"good, really",Positive\nbad,NEG\nfine,pos\nawful,negative\n'
    splits = load_splits(sa(train, suffix=".csv", dev_name="validation"), "fa")
    assert splits.train[0] == SaExample("good, really", 1)
    assert [example.label for example in splits.train] == [1, 0, 1, 0]


def test_binary_zero_one_labels_are_detected(sa):
    splits = load_splits(sa(jsonl({"text": "a", "label": 0}, {"text": "b", "label": "1"})), "fa")
    assert splits.train == [SaExample("a", 0), SaExample("b", 1)]


def test_explicit_label_format_overrides_detection(sa, load_error):
    # Only 1 and 2 would be ambiguous for auto; as stars both are negative, which leaves one class.
    train = jsonl({"text": "a", "stars": 1}, {"text": "b", "stars": 2})
    message = load_error(sa(train, label_format="stars"), "fa")
    assert "train.jsonl: --label-format stars leaves one class (negative only) (0 positive, 2 negative" in message


def test_polarity_on_zero_one_labels_is_refused_with_the_counts(sa, load_error):
    train = jsonl(*({"text": f"r{i}", "label": i % 2} for i in range(6)))
    message = load_error(sa(train, label_format="polarity"), "fa")
    assert "fa/train.jsonl: --label-format polarity leaves one class (positive only)" in message
    assert "(3 positive, 0 negative, 3 dropped as neutral of 6)" in message


def test_a_format_dropping_more_than_half_of_a_split_is_refused(sa, load_error):
    train = jsonl({"text": "a", "stars": 1}, {"text": "b", "stars": 5})
    dev = jsonl({"text": "a", "stars": 1}, {"text": "b", "stars": 3}, {"text": "c", "stars": 3})
    message = load_error(sa(train, dev=dev, label_format="stars"), "fa")
    assert "dev.jsonl: --label-format stars drops more than half of the split (0 positive, 1 negative, 2 dropped" in message


def test_a_format_dropping_half_of_a_split_is_kept(sa):
    train = jsonl({"text": "a", "stars": 1}, {"text": "b", "stars": 5}, {"text": "c", "stars": 3}, {"text": "d", "stars": 3})
    splits = load_splits(sa(train, label_format="stars"), "fa")
    assert [example.label for example in splits.train] == [0, 1]


def test_configured_columns_are_used(sa):
    train = jsonl({"body": "a", "score": "positive", "text": "ignored"})
    splits = load_splits(sa(train, text_column="body", label_column="score"), "fa")
    assert splits.train == [SaExample("a", 1)]


def test_ambiguous_labels_ask_for_the_label_format(sa, load_error):
    message = load_error(sa(jsonl({"text": "a", "label": 1}, {"text": "b", "label": 2})), "fa")
    assert "train.jsonl" in message and "(1, 2)" in message and "pass --label-format" in message


def test_malformed_json_line_names_file_and_line(sa, load_error, tmp_path):
    message = load_error(sa('{"text": "a", "label": 1}\n\n{"text": "b", label: 0}\n'), "fa")
    assert f"{tmp_path / 'fa' / 'train.jsonl'}:3: not valid JSON" in message


def test_missing_text_column_names_the_columns_and_the_option(sa, load_error):
    message = load_error(sa(jsonl({"body": "a", "label": 1})), "fa")
    assert "no text column" in message and "columns present: body, label" in message and "--text-column" in message


def test_missing_configured_label_column_names_the_option(sa, load_error):
    message = load_error(sa(jsonl({"text": "a", "label": 1}), label_column="score"), "fa")
    assert "no column 'score'" in message and "--label-column" in message


def test_unparseable_label_names_file_line_and_value(sa, load_error, tmp_path):
    train = jsonl({"text": "a", "stars": 5}, {"text": "b", "stars": 1})
    dev = jsonl({"text": "a", "stars": 5}, {"text": "b", "stars": "five"})
    message = load_error(sa(train, dev=dev), "fa")
    assert f"{tmp_path / 'fa' / 'dev.jsonl'}:2: label 'five' is not a stars label (1-5)" in message


def test_csv_row_with_extra_fields_names_file_and_line(sa, load_error, tmp_path):
    message = load_error(sa("text,label\na,1\nb,0,extra\n", suffix=".csv"), "fa")
    assert f"{tmp_path / 'fa' / 'train.csv'}:3: expected 2 fields" in message


def test_split_with_only_neutral_reviews_is_an_error(sa, load_error):
    train = jsonl({"text": "a", "stars": 1}, {"text": "b", "stars": 5})
    message = load_error(sa(train, test=jsonl({"text": "c", "stars": 3})), "fa")
    assert "test.jsonl: no reviews left once neutral labels are dropped" in message


def test_empty_split_is_an_error(sa, load_error):
    message = load_error(sa(jsonl({"text": "a", "label": 1}), dev="\n"), "fa")
    assert "dev.jsonl: has no reviews" in message


def test_missing_split_names_the_expected_path(write, load_error, tmp_path):
    write(tmp_path / "fa" / "train.jsonl", jsonl({"text": "a", "label": 1}))
    message = load_error(RunConfig(data=str(tmp_path), task="sa", target="fa"), "fa")
    assert f"{tmp_path / 'fa' / 'dev'}.jsonl: missing dev split" in message and "validation.csv" in message


def test_absent_language_lists_the_languages_present(sa, load_error):
    message = load_error(sa(jsonl({"text": "a", "label": 1})), "te")
    assert "no folder for language 'te' (languages present: fa)" in message


def test_hub_has_no_sa_dataset(load_error):
    message = load_error(RunConfig(data="hub", task="sa", target="fa"), "fa")
    assert "SA has no hub dataset" in message and "--data DIR" in message and "--data synthetic" in message


def sentiraama(tmp_path, write, positive: int, negative: int) -> RunConfig:
    write(tmp_path / "te" / "product_pos.txt", "".join(f"good {i}\n\n" for i in range(positive)))
    write(tmp_path / "te" / "product_neg.txt", "".join(f"bad {i}\n" for i in range(negative)))
    return RunConfig(data=str(tmp_path), task="sa", target="te")


def test_sentiraama_is_split_100_100_rest_with_balanced_classes(tmp_path, write):
    splits = load_splits(sentiraama(tmp_path, write, 152, 151), "te")
    assert (len(splits.train), len(splits.dev), len(splits.test)) == (103, 100, 100)
    assert sum(example.label for example in splits.test) == 50
    texts = [example.text for split in (splits.train, splits.dev, splits.test) for example in split]
    assert len(set(texts)) == 303
    assert splits.note.endswith("dealt split (seed 13), 103 train / 100 dev / 100 test")


def test_sentiraama_separator_lines_are_no_reviews(tmp_path, write):
    write(tmp_path / "te" / "product_pos.txt", "".join(f"good {i}\n{'_' * 26}\n" for i in range(40)))
    write(tmp_path / "te" / "product_neg.txt", "".join(f"{'_' * 26}\nbad {i}\n" for i in range(40)))
    splits = load_splits(RunConfig(data=str(tmp_path), task="sa", target="te"), "te")
    texts = [example.text for split in (splits.train, splits.dev, splits.test) for example in split]
    assert len(texts) == 80 and not any(text.startswith("_") for text in texts)


SEPARATOR = "_" * 26


def reference_layout(tmp_path, write, *, base: int = 0, extra_negative: str = "") -> RunConfig:
    """product_pos.txt / product_neg.txt laid out as the reference's index says: a review at
    each line it names (counted from ``base``), separator lines everywhere else; then
    ``extra_negative`` at the end of product_neg.txt."""
    index = reference_index()
    for name in ("product_pos.txt", "product_neg.txt"):
        positions = index.positions(name, base)
        lines = [review_text(name, position + base) if position in positions else SEPARATOR
                 for position in range(max(positions) + 1)]
        extra = extra_negative if name == "product_neg.txt" else ""
        write(tmp_path / "te" / name, "\n".join(lines) + f"\n{SEPARATOR}\n" + extra)
    return RunConfig(data=str(tmp_path), task="sa", target="te")


def review_text(name: str, line: int) -> str:
    return f"{name} review at line {line}"


def expected_split(split: str) -> list[SaExample]:
    return [SaExample(review_text(name, line), int(name == "product_pos.txt"))
            for name, line in reference_index().splits[split]]


def test_shipped_index_is_the_reference_split_of_303_reviews():
    splits = reference_index().splits
    assert {split: len(entries) for split, entries in splits.items()} == {"train": 100, "dev": 103, "test": 100}
    entries = [entry for split in splits.values() for entry in split]
    assert len(set(entries)) == 303
    assert [sum(name == file for name, _ in entries) for file in ("product_pos.txt", "product_neg.txt")] == [166, 137]
    assert splits["train"][:2] == (("product_pos.txt", 187), ("product_neg.txt", 124))


def test_shipped_index_is_package_data():
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert "sentiraama_split.json" in pyproject["tool"]["setuptools"]["package-data"]["metaxl_tune.data"]


@pytest.mark.parametrize("base", [0, 1])
def test_the_reference_files_are_split_by_its_index(tmp_path, write, base):
    splits = load_splits(reference_layout(tmp_path, write, base=base), "te")
    assert (splits.train, splits.dev, splits.test) == tuple(expected_split(split) for split in ("train", "dev", "test"))
    assert splits.note == (
        f"te: Sentiraama files match the reference's split index (microsoft/MetaXL data/data_index.txt, "
        f"lines counted from {base}): split by it, 100 train / 103 dev / 100 test"
    )


def test_files_with_a_review_the_index_does_not_name_keep_the_dealt_split(tmp_path, write):
    splits = load_splits(reference_layout(tmp_path, write, extra_negative="one more review\n"), "te")
    assert (len(splits.train), len(splits.dev), len(splits.test)) == (104, 100, 100)
    assert splits.train != expected_split("train")
    assert splits.note == (
        "te: Sentiraama files are not the ones the reference's split index names (its review lines are "
        "elsewhere): dealt split (seed 13), 104 train / 100 dev / 100 test"
    )


def test_sentiraama_split_is_deterministic(tmp_path, write):
    config = sentiraama(tmp_path, write, 40, 40)
    assert load_splits(config, "te") == load_splits(config, "te")


def test_sentiraama_needs_both_files(tmp_path, write, load_error):
    write(tmp_path / "te" / "product_pos.txt", "good\n")
    message = load_error(RunConfig(data=str(tmp_path), task="sa", target="te"), "te")
    assert "product_neg.txt: missing" in message


def test_byte_order_mark_of_spreadsheet_exports_is_ignored(sa):
    splits = load_splits(sa("\ufefftext,label\ngood,1\nbad,0\n", suffix=".csv"), "fa")
    assert splits.train == [SaExample("good", 1), SaExample("bad", 0)]


@pytest.fixture
def sentipers_target_marc_source(tmp_path, write):
    """fa: SentiPers-style polarity TSV; en: MARC-style stars JSON lines (the paper's SA pair)."""
    polarity = "sentence\tpolarity\nbad\t-2\nmeh\t-1\nok\t0\ngood\t1\ngreat\t2\n"
    stars = jsonl(*({"review_body": f"r{value}", "stars": value} for value in range(1, 6)))
    for split in ("train", "dev", "test"):
        write(tmp_path / "fa" / f"{split}.tsv", polarity)
        write(tmp_path / "en" / f"{split}.jsonl", stars)
    return lambda **fields: RunConfig(data=str(tmp_path), task="sa", target="fa", source="en", **fields)


@pytest.mark.parametrize("formats", [{"label_format": "polarity", "source_label_format": "stars"}, {}],
                         ids=["explicit", "auto-per-language"])
def test_target_and_source_read_their_own_label_formats(sentipers_target_marc_source, formats):
    config = sentipers_target_marc_source(**formats)
    assert [example.label for example in load_splits(config, "fa").train] == [0, 0, 1, 1]  # 0 dropped
    assert load_splits(config, "en").train == [SaExample("r1", 0), SaExample("r2", 0), SaExample("r4", 1),
                                               SaExample("r5", 1)]  # 3 dropped


def test_a_source_label_outside_its_format_names_the_source_flag(sentipers_target_marc_source):
    # One format for both languages: MARC stars 3, 4 and 5 are no polarity labels.
    with pytest.raises(DataError, match=r"en/train\.jsonl:3: label 3 is not a polarity label .*--source-label-format$"):
        load_splits(sentipers_target_marc_source(label_format="polarity"), "en")


def test_a_review_with_a_token_over_the_limit_is_refused_with_its_line(sa, load_error):
    train = jsonl({"text": "fine", "label": 1}, {"text": "bad " + "x" * 1001, "label": 0})
    message = load_error(sa(train), "fa")
    assert "fa/train.jsonl:2: a token of 1,001 characters ('xxxxxxxxxxxxxxxxxxxx'...), over the limit" in message


def test_a_tsv_line_over_the_limit_is_refused_with_its_line(sa, load_error):
    long_review = " ".join(["fine"] * 25_001)
    message = load_error(sa(f"text\tlabel\ngood\t1\n{long_review}\t0\n", suffix=".tsv"), "fa")
    assert "fa/train.tsv:3: the line holds over 100,000 characters, the limit a line" in message
