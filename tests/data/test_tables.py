"""NER data in the hub's table format, saved locally with `datasets`."""

from __future__ import annotations

import datasets
import pytest

from metaxl_tune.config import RunConfig
from metaxl_tune.data import NER_LABELS, NerExample, load_splits

FEATURES = datasets.Features(
    {
        "tokens": datasets.Sequence(datasets.Value("string")),
        "ner_tags": datasets.Sequence(datasets.ClassLabel(names=list(NER_LABELS))),
    }
)
ROWS = {"tokens": [["Maru", "Tessa", "geldi"], ["Aşgabat"]], "ner_tags": [[1, 2, 0], [5]]}
EXPECTED = [NerExample(("Maru", "Tessa", "geldi"), ("B-PER", "I-PER", "O")), NerExample(("Aşgabat",), ("B-LOC",))]


def table(rows=ROWS, features=FEATURES):
    return datasets.Dataset.from_dict(rows, features=features)


def test_reads_a_saved_dataset_dict_with_a_validation_split(tmp_path):
    saved = datasets.DatasetDict({"train": table(), "validation": table(), "test": table()})
    saved.save_to_disk(str(tmp_path / "tk"))
    splits = load_splits(RunConfig(data=str(tmp_path)), "tk")
    assert splits.train == EXPECTED and splits.dev == EXPECTED and splits.test == EXPECTED


def test_reads_parquet_files_with_class_label_tags(tmp_path):
    for split in ("train", "dev", "test"):
        table().to_parquet(str(tmp_path / "tk" / f"{split}.parquet"))
    assert load_splits(RunConfig(data=str(tmp_path)), "tk").dev == EXPECTED


def test_reads_parquet_files_with_string_tags(tmp_path):
    rows = {"tokens": [["Kalo", "Bank"]], "ner_tags": [["B-ORG", "I-ORG"]]}
    for split in ("train", "validation", "test"):
        datasets.Dataset.from_dict(rows).to_parquet(str(tmp_path / "tk" / f"{split}.parquet"))
    expected = [NerExample(("Kalo", "Bank"), ("B-ORG", "I-ORG"))]
    assert load_splits(RunConfig(data=str(tmp_path)), "tk").train == expected


def test_missing_split_in_a_saved_dataset_dict_names_the_splits_present(tmp_path, load_error):
    datasets.DatasetDict({"train": table(), "test": table()}).save_to_disk(str(tmp_path / "tk"))
    message = load_error(RunConfig(data=str(tmp_path)), "tk")
    assert str(tmp_path / "tk") in message and "no dev split (splits present: train, test)" in message


def test_missing_tags_column_names_the_columns_present(tmp_path, load_error):
    rows = {"tokens": [["Maru"]], "labels": [[1]]}
    datasets.DatasetDict({s: datasets.Dataset.from_dict(rows) for s in ("train", "dev", "test")}).save_to_disk(
        str(tmp_path / "tk")
    )
    message = load_error(RunConfig(data=str(tmp_path)), "tk")
    assert "no column 'ner_tags' (columns present: tokens, labels)" in message


@pytest.mark.parametrize(
    ("tags", "expected"), [([0, 9], "tag 9 is not a tag index 0-6"), (["O", "B-MISC"], "unknown tag 'B-MISC'")]
)
def test_bad_tag_names_file_and_row(tmp_path, load_error, tags, expected):
    rows = {"tokens": [["Maru"], ["Tessa"]], "ner_tags": [[tag] for tag in tags]}
    for split in ("train", "dev", "test"):
        datasets.Dataset.from_dict(rows).to_parquet(str(tmp_path / "tk" / f"{split}.parquet"))
    message = load_error(RunConfig(data=str(tmp_path)), "tk")
    assert f"{tmp_path / 'tk' / 'train.parquet'}: row 2: {expected}" in message


def test_missing_parquet_split_names_the_expected_path(tmp_path, load_error):
    table().to_parquet(str(tmp_path / "tk" / "train.parquet"))
    message = load_error(RunConfig(data=str(tmp_path)), "tk")
    assert f"{tmp_path / 'tk' / 'dev.parquet'}: missing dev split" in message


def test_unreadable_parquet_file_is_a_data_error(tmp_path, write, load_error):
    for split in ("train", "dev", "test"):
        write(tmp_path / "tk" / f"{split}.parquet", "not parquet")
    message = load_error(RunConfig(data=str(tmp_path)), "tk")
    assert f"{tmp_path / 'tk'}: cannot read the parquet files" in message
