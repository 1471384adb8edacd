from __future__ import annotations

import pytest

from metaxl_tune.config import RunConfig
from metaxl_tune.data import NerExample, load_splits

TRAIN = "tk:Maru\tB-PER\ntk:Tessa\tI-PER\ntk:geldi\tO\n\ntk:Aşgabat\tB-LOC\n"
DEV = "tk:Kalo\tB-ORG\ntk:Bank\tI-ORG\n"
TEST = "tk:gitdi\tO\n"


@pytest.fixture
def panx(tmp_path, write):
    """Writes the three panx files of tk (any of them replaced) and returns the run config."""

    def make(train=TRAIN, dev=DEV, test=TEST, names=("train", "dev", "test")):
        for name, text in zip(names, (train, dev, test)):
            write(tmp_path / "tk" / name, text)
        return RunConfig(data=str(tmp_path))

    return make


def test_reads_prefixed_files_and_strips_the_prefix(panx):
    splits = load_splits(panx(), "tk")
    assert splits.train == [
        NerExample(("Maru", "Tessa", "geldi"), ("B-PER", "I-PER", "O")),
        NerExample(("Aşgabat",), ("B-LOC",)),
    ]
    assert splits.dev == [NerExample(("Kalo", "Bank"), ("B-ORG", "I-ORG"))]
    assert splits.test == [NerExample(("gitdi",), ("O",))]


def test_reads_unprefixed_files_with_suffixes_and_the_validation_alias(panx):
    config = panx(train="Maru\tB-PER\n12:30\tO\n", dev="Kalo\tB-ORG\n", names=("train.txt", "validation.tsv", "test"))
    splits = load_splits(config, "tk")
    assert splits.train == [NerExample(("Maru", "12:30"), ("B-PER", "O"))]
    assert splits.dev == [NerExample(("Kalo",), ("B-ORG",))]


def test_docstart_windows_newlines_and_trailing_blank_lines_are_ignored(panx):
    splits = load_splits(panx(train="-DOCSTART-\tO\n\r\ntk:Maru\tB-PER\r\ntk:geldi\tO\r\n\n\n\n"), "tk")
    assert splits.train == [NerExample(("Maru", "geldi"), ("B-PER", "O"))]


def test_line_without_tab_names_file_and_line(panx, load_error, tmp_path):
    message = load_error(panx(train="tk:Maru\tB-PER\ntk:Tessa I-PER\n"), "tk")
    assert f"{tmp_path / 'tk' / 'train'}:2:" in message and "tab" in message


def test_empty_token_names_file_and_line(panx, load_error, tmp_path):
    message = load_error(panx(test="\n \tO\n"), "tk")
    assert f"{tmp_path / 'tk' / 'test'}:2:" in message and "non-empty token" in message


def test_unknown_tag_lists_the_allowed_tags(panx, load_error):
    message = load_error(panx(dev="tk:Kalo\tB-MISC\n"), "tk")
    assert "dev:1:" in message and "'B-MISC'" in message
    assert "O, B-PER, I-PER, B-ORG, I-ORG, B-LOC, I-LOC" in message


def test_split_without_sentences_is_an_error(panx, load_error, tmp_path):
    message = load_error(panx(test="-DOCSTART-\tO\n\n"), "tk")
    assert str(tmp_path / "tk" / "test") in message and "no sentences" in message


def test_missing_split_names_the_expected_path(write, load_error, tmp_path):
    write(tmp_path / "tk" / "train", TRAIN)
    write(tmp_path / "tk" / "test", TEST)
    message = load_error(RunConfig(data=str(tmp_path)), "tk")
    assert f"{tmp_path / 'tk' / 'dev'}: missing dev split" in message
    assert "validation" in message and "panx layout" in message


def test_absent_language_lists_the_languages_present(panx, load_error, tmp_path):
    (tmp_path / "en").mkdir()
    message = load_error(panx(), "qu")
    assert "'qu'" in message and "languages present: en, tk" in message


def test_missing_data_directory_says_what_to_pass(load_error, tmp_path):
    message = load_error(RunConfig(data=str(tmp_path / "nowhere")), "tk")
    assert "nowhere: no such data directory" in message and "--data synthetic" in message


def test_prefix_of_another_language_is_an_error(panx, load_error):
    message = load_error(panx(train="tr:Maru\tB-PER\n"), "tk")
    assert "train:1:" in message and "'tr:'" in message and "folder 'tk'" in message


def test_another_language_later_in_a_prefixed_file_is_an_error(panx, load_error):
    message = load_error(panx(train="tk:Maru\tB-PER\n\ntr:Tessa\tB-PER\n"), "tk")
    assert "train:3:" in message and "'tr:'" in message


def test_missing_prefix_in_a_prefixed_file_is_an_error(panx, load_error):
    message = load_error(panx(train="tk:Maru\tB-PER\nTessa\tI-PER\n"), "tk")
    assert "train:2:" in message and "lacks the 'tk:' prefix" in message


def test_two_files_for_one_split_is_an_error(panx, write, load_error, tmp_path):
    config = panx()
    write(tmp_path / "tk" / "dev.txt", DEV)
    message = load_error(config, "tk")
    assert "both dev and dev.txt hold the dev split; keep one" in message


def test_a_token_over_the_limit_is_refused_with_its_line(panx, load_error):
    from metaxl_tune.data.limits import MAX_TOKEN_CHARS

    long_token = "a" * (MAX_TOKEN_CHARS + 1)
    message = load_error(panx(train=f"tk:Maru\tB-PER\ntk:{long_token}\tO\n"), "tk")
    assert "tk/train:2: a token of 1,001 characters" in message
    assert "limit of 1,000 characters a token" in message


def test_a_token_at_the_limit_is_read(panx):
    from metaxl_tune.data.limits import MAX_TOKEN_CHARS

    splits = load_splits(panx(train=f"tk:{'a' * MAX_TOKEN_CHARS}\tO\n"), "tk")
    assert len(splits.train[0].tokens[0]) == MAX_TOKEN_CHARS


def test_a_line_over_the_limit_is_refused_with_its_line(panx, load_error):
    from metaxl_tune.data.limits import MAX_LINE_CHARS

    words = " ".join(["word"] * (MAX_LINE_CHARS // 5 + 1))
    message = load_error(panx(dev=f"tk:Kalo\tB-ORG\ntk:{words}\tO\n"), "tk")
    assert "tk/dev:2: the line holds over 100,000 characters, the limit a line" in message
