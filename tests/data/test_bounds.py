"""Reading is bounded by what is asked: splits are streams, lines are read with a limit, and a
sample holds only the examples drawn (never a whole file)."""

from __future__ import annotations

import json
import random

import pytest

import metaxl_tune.data.panx as panx_module
import metaxl_tune.data.panx_scan as scan_module
from metaxl_tune.config import RunConfig
from metaxl_tune.data import DataError, NerExample, open_splits, sample, sample_indices
from metaxl_tune.data.limits import MAX_LINE_CHARS, MAX_SENTENCE_TOKENS
from metaxl_tune.data.panx_scan import PanxStream
from tests.io_counters import reading

HUGE = 1 << 30  # a 1 GiB line: reading it whole would take a GiB of memory


def sparse(path, size: int = HUGE, head: bytes = b""):
    """A file of ``size`` bytes that takes no disk: ``head``, then NUL characters (valid UTF-8) and no line end."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(head)
        handle.truncate(size)
    return path


def small_panx(folder, language="tk", train="tk:Maru\tB-PER\n"):
    folder.mkdir(parents=True, exist_ok=True)
    for split, text in (("train", train), ("dev", "tk:Kalo\tB-ORG\n"), ("test", "tk:gitdi\tO\n")):
        if not (folder / split).exists():
            (folder / split).write_text(text, encoding="utf-8")


# ---- one huge line is refused after reading the limit, not the line ------------------------------


def test_a_one_gigabyte_panx_line_is_refused_after_reading_the_limit(tmp_path):
    sparse(tmp_path / "tk" / "train", head=b"tk:")
    small_panx(tmp_path / "tk")
    splits = open_splits(RunConfig(data=str(tmp_path)), "tk")
    error, read = reading(lambda: len(splits.train))
    assert isinstance(error, DataError)
    assert str(error).endswith("tk/train:1: the line holds over 100,000 characters, the limit a line; split the "
                               "text or remove the line")
    assert read < 4 * MAX_LINE_CHARS + (2 << 20)  # the limit (up to 4 bytes a character) and a block


@pytest.mark.parametrize("suffix", [".jsonl", ".tsv", ".csv"])
def test_a_one_gigabyte_review_line_is_refused_after_reading_the_limit(tmp_path, suffix):
    head = b"" if suffix == ".jsonl" else b"text,label\n" if suffix == ".csv" else b"text\tlabel\n"
    folder = tmp_path / "fa"
    sparse(folder / f"train{suffix}", head=head)
    for split in ("dev", "test"):
        (folder / f"{split}.jsonl").write_text('{"text": "good", "label": 1}\n', encoding="utf-8")
    error, read = reading(lambda: open_splits(RunConfig(data=str(tmp_path), task="sa", target="fa"), "fa"))
    assert isinstance(error, DataError), error
    line = 1 if suffix == ".jsonl" else 2
    assert f"fa/train{suffix}:{line}: the line holds over 100,000 characters" in str(error)
    assert read < 4 * MAX_LINE_CHARS + (1 << 20)


def test_a_one_gigabyte_sentiraama_line_is_refused_after_reading_the_limit(tmp_path):
    folder = tmp_path / "te"
    sparse(folder / "product_pos.txt", head=b"good\n")
    (folder / "product_neg.txt").write_text("bad\n", encoding="utf-8")
    error, read = reading(lambda: open_splits(RunConfig(data=str(tmp_path), task="sa", target="te"), "te"))
    assert isinstance(error, DataError)
    assert "te/product_pos.txt:2: the line holds over 100,000 characters" in str(error)
    assert read < 4 * MAX_LINE_CHARS + (1 << 20)


# ---- panx: columns and sentence length ------------------------------------------------------------


def test_a_ner_line_with_three_columns_is_refused_with_file_and_line(tmp_path, load_error):
    small_panx(tmp_path / "tk", train="tk:Maru\tB-PER\ntk:a\tb\tO\n")
    message = load_error(RunConfig(data=str(tmp_path)), "tk")
    assert message == (f"{tmp_path / 'tk' / 'train'}:2: expected 'token<TAB>TAG' or 'tk:token<TAB>TAG' "
                       "(3 tab-separated columns in 'tk:a\\tb\\tO'); separate one non-empty token and its tag by one tab")


def test_a_sentence_over_the_token_limit_is_refused(tmp_path, load_error):
    small_panx(tmp_path / "tk", train="tk:w\tO\n" * (MAX_SENTENCE_TOKENS + 1))
    message = load_error(RunConfig(data=str(tmp_path)), "tk")
    assert message.endswith(f"tk/train:{MAX_SENTENCE_TOKENS + 1}: a sentence of over 10,000 tokens, the limit a "
                            "sentence; separate the sentences by blank lines")


def test_a_sentence_at_the_token_limit_is_read(tmp_path):
    small_panx(tmp_path / "tk", train="tk:w\tO\n" * MAX_SENTENCE_TOKENS)
    splits = open_splits(RunConfig(data=str(tmp_path)), "tk")
    assert len(splits.train) == 1 and len(splits.train.take([0])[0].tokens) == MAX_SENTENCE_TOKENS


# ---- panx: the block scan agrees with the line reader ---------------------------------------------

LINES = ["tk:Maru\tB-PER", "tk:Tessa\tI-PER", "tk:geldi\tO", "", "", "-DOCSTART-\tO", "tk:a b\tO", "tk:x\t O ",
         " \t ", "tk:12:30\tO", "tk:ş\tB-LOC"]


def mixed_file(path, sentences: int = 400, seed: int = 0):
    rng = random.Random(seed)
    parts = []
    for _ in range(sentences):
        parts.extend(rng.choice([line for line in LINES if line.startswith("tk:")]) for _ in range(rng.randint(1, 6)))
        parts.extend(rng.choice(["", "", " \t ", "-DOCSTART-\tO", "\n"]) for _ in range(rng.randint(1, 2)))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def small_blocks(monkeypatch):
    monkeypatch.setattr(scan_module, "_BLOCK_CHARS", 300)  # many blocks, so they meet sentences at every offset


def test_counting_and_taking_by_blocks_read_what_the_line_reader_reads(tmp_path, small_blocks):
    stream = PanxStream(mixed_file(tmp_path / "train"), "tk")
    everything = list(stream)  # line by line
    assert len(stream) == len(everything) == 400
    order = sample_indices(len(stream), len(stream), seed=5)
    assert stream.take(order) == [everything[index] for index in order]


def test_a_bad_line_deep_in_a_large_file_gets_the_line_readers_error(tmp_path, small_blocks):
    path = mixed_file(tmp_path / "train")
    lines = path.read_text(encoding="utf-8").split("\n")
    lines[len(lines) // 2] = "tk:a\tB-MISC"
    path.write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(DataError, match=rf"train:{len(lines) // 2 + 1}: unknown tag 'B-MISC'"):
        len(PanxStream(path, "tk"))


def test_taking_a_sample_builds_only_the_sentences_taken(tmp_path, small_blocks, monkeypatch):
    built = []

    class Counted(NerExample):
        def __init__(self, *args):
            super().__init__(*args)
            built.append(self)

    stream = PanxStream(mixed_file(tmp_path / "train", sentences=2000), "tk")
    total = len(stream)
    monkeypatch.setattr(panx_module, "NerExample", Counted)
    taken = stream.take(sample_indices(total, 10, seed=1))
    assert len(taken) == 10 and len(built) < 50  # the ten, and the first block's (read line by line)


def test_taking_stops_after_the_last_example_asked_for(tmp_path):
    path = tmp_path / "tk" / "train"
    path.parent.mkdir(parents=True)
    path.write_text("tk:a\tO\n\n" * 5 + "tk:b\tO\n" + "\n" * 2_000_000, encoding="utf-8")
    stream = PanxStream(path, "tk")
    error, read = reading(lambda: stream.take([5, 0]))
    assert error is None and stream.take([5, 0]) == [NerExample(("b",), ("O",)), NerExample(("a",), ("O",))]
    assert read < 2 * scan_module._BLOCK_CHARS


# ---- sampling: the draws of a seed are the draws it made before streaming --------------------------


def test_sample_indices_draw_what_a_shuffled_list_draws():
    for count, size, seed in ((1, 1, 0), (10, 3, 1), (1000, 100, 7), (54_321, 10, 2)):
        order = list(range(count))
        random.Random(seed).shuffle(order)
        assert sample_indices(count, size, seed) == order[:size]


def test_pinned_draws_of_seed_1():
    # What the list-based sampler drew before splits became streams: a seed's sample is unchanged.
    assert sample_indices(20_000, 5, seed=1) == [16211, 2346, 11499, 5081, 10642]
    assert sample(list("abcdefghij"), 4, seed=1) == ["g", "i", "j", "h"]


def test_a_sample_of_a_stream_is_the_sample_of_its_list(tmp_path):
    rows = "".join(json.dumps({"text": f"review {i}", "label": i % 2}) + "\n" for i in range(300))
    for split in ("train", "dev", "test"):
        (tmp_path / "fa").mkdir(exist_ok=True)
        (tmp_path / "fa" / f"{split}.jsonl").write_text(rows, encoding="utf-8")
    train = open_splits(RunConfig(data=str(tmp_path), task="sa", target="fa"), "fa").train
    assert train.take(sample_indices(len(train), 25, seed=3)) == sample(list(train), 25, seed=3)
