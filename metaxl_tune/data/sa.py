"""Sentiment data in a local directory: MARC / SentiPers style tables, or Sentiraama text files.

Table layout: ``<dir>/<lang>/{train,dev,test}.{jsonl,tsv,csv}`` (dev may be ``validation``),
one review per JSON line or per row under a header row (TSV rows are unquoted, one per line).
The text column is the first of text, review_body, sentence, review that exists, the label
column the first of label, stars, polarity, sentiment, unless ``--text-column`` /
``--label-column`` name them. Labels are read as described in ``sa_labels``; each language
has its own format (``--label-format`` for the target, ``--source-label-format`` for the
sources, defaulting to the target's), and the format detected on a language's train split
applies to its dev and test.

Sentiraama layout: ``<dir>/<lang>/product_pos.txt`` and ``product_neg.txt``, one review per
line and no splits: split by the reference's index when the files are the ones it used, else
dealt out with a fixed seed (``sentiraama``).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

from metaxl_tune.config import RunConfig
from metaxl_tune.data.errors import DataError
from metaxl_tune.data.examples import SaExample, Splits
from metaxl_tune.data.layout import SPLITS, find_split_files, require_split_files
from metaxl_tune.data.limits import check_line, check_tokens
from metaxl_tune.data.sa_labels import EXPECTED, RawLabel, check_label_counts, detect_format, normalize, to_label
from metaxl_tune.data.sentiraama import FILES as SENTIRAAMA_FILES
from metaxl_tune.data.sentiraama import sentiraama_splits

SA_SUFFIXES: tuple[str, ...] = (".jsonl", ".tsv", ".csv")
TEXT_COLUMNS: tuple[str, ...] = ("text", "review_body", "sentence", "review")
LABEL_COLUMNS: tuple[str, ...] = ("label", "stars", "polarity", "sentiment")

Record = tuple[int, str, RawLabel]  # 1-based line number, text, raw label


def locate_sa_files(folder: Path) -> dict[str, Path]:
    """The files a load reads: keys train/dev/test, or positive/negative for Sentiraama."""
    files = find_split_files(folder, SA_SUFFIXES)
    sentiraama = {name: folder / file for name, file in SENTIRAAMA_FILES.items()}
    if not any(files.values()) and any(path.is_file() for path in sentiraama.values()):
        for path in sentiraama.values():
            if not path.is_file():
                raise DataError(
                    f"{path}: missing; the Sentiraama layout needs product_pos.txt and product_neg.txt"
                )
        return sentiraama
    layout = "jsonl/tsv/csv (or Sentiraama product_pos.txt/product_neg.txt)"
    return require_split_files(folder, files, SA_SUFFIXES, layout)


def read_sa_splits(folder: Path, config: RunConfig, language: str) -> Splits:
    files = locate_sa_files(folder)
    if "positive" in files:
        return sentiraama_splits(files, language)
    records = {split: _read_records(files[split], config) for split in SPLITS}
    label_format, flag = config.label_format_of(language), config.label_format_flag(language)
    if label_format == "auto":
        label_format = detect_format((label for _, _, label in records["train"]), str(files["train"]), flag=flag)
    return Splits(**{split: _examples(files[split], records[split], label_format, flag, train=split == "train")
                     for split in SPLITS})


def _examples(path: Path, records: list[Record], label_format: str, flag: str, *, train: bool) -> list[SaExample]:
    examples = []
    labels: list[int | None] = []
    for line, text, raw in records:
        try:
            label = to_label(raw, label_format)
        except ValueError:
            raise DataError(
                f"{path}:{line}: label {raw!r} is not a {label_format} label ({EXPECTED[label_format]}); "
                f"fix the value or pass another {flag}"
            ) from None
        labels.append(label)
        if label is not None:
            examples.append(SaExample(text, label))
    if not examples:
        raise DataError(f"{path}: no reviews left once neutral labels are dropped; add positive and negative ones")
    check_label_counts(str(path), label_format, flag, [raw for _, _, raw in records], labels, train=train)
    return examples


def _read_records(path: Path, config: RunConfig) -> list[Record]:
    rows = _read_jsonl(path) if path.suffix == ".jsonl" else _read_delimited(path)
    records: list[Record] = []
    text_column = label_column = None
    try:
        for line, row in rows:
            if text_column is None:
                text_column = _pick_column(path, row, config.text_column, TEXT_COLUMNS, "text")
                label_column = _pick_column(path, row, config.label_column, LABEL_COLUMNS, "label")
            text, label = row.get(text_column), row.get(label_column)
            if not isinstance(text, str) or not text.strip():
                raise DataError(
                    f"{path}:{line}: {text_column!r} is missing, empty or not text; give every review its text"
                )
            if label is None or label == "":
                raise DataError(f"{path}:{line}: {label_column!r} is missing or empty; give every review a label")
            check_tokens(path, line, text)
            records.append((line, text.strip(), normalize(label)))
    except UnicodeDecodeError:
        raise DataError(f"{path}: is not UTF-8 text; re-encode it as UTF-8") from None
    if not records:
        raise DataError(f"{path}: has no reviews; add some or remove the empty split")
    return records


def _pick_column(path: Path, row: dict, chosen: str | None, candidates: tuple[str, ...], kind: str) -> str:
    if chosen is not None:
        if chosen in row:
            return chosen
        raise DataError(
            f"{path}: no column {chosen!r} (columns present: {', '.join(row)}); fix --{kind}-column"
        )
    for name in candidates:
        if name in row:
            return name
    raise DataError(
        f"{path}: no {kind} column (looked for {', '.join(candidates)}; columns present: {', '.join(row)}); "
        f"pass --{kind}-column"
    )


def _read_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    with path.open(encoding="utf-8-sig") as lines:
        for number, line in enumerate(lines, start=1):
            check_line(path, number, line.rstrip("\r\n"))
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(
                    f"{path}:{number}: not valid JSON ({error.msg}); write one JSON object per line"
                ) from None
            if not isinstance(row, dict):
                raise DataError(
                    f"{path}:{number}: expected a JSON object, got {type(row).__name__}; write one object per line"
                )
            yield number, row


def _read_delimited(path: Path) -> Iterator[tuple[int, dict]]:
    tsv = path.suffix == ".tsv"
    with path.open(encoding="utf-8-sig", newline="") as handle:
        quoting = csv.QUOTE_NONE if tsv else csv.QUOTE_MINIMAL
        reader = csv.DictReader(_checked_lines(path, handle), delimiter="\t" if tsv else ",", quoting=quoting)
        for row in _csv_rows(path, reader):
            if None in row or None in row.values():
                raise DataError(
                    f"{path}:{reader.line_num}: expected {len(reader.fieldnames or ())} fields like the header "
                    f"({', '.join(reader.fieldnames or ())}); fix the separators on this line"
                )
            yield reader.line_num, row


def _checked_lines(path: Path, handle) -> Iterator[str]:
    """The file's physical lines, each within the line limit (before csv joins quoted ones)."""
    for number, line in enumerate(handle, start=1):
        check_line(path, number, line.rstrip("\r\n"))
        yield line


def _csv_rows(path: Path, reader: csv.DictReader) -> Iterator[dict]:
    try:
        yield from reader
    except csv.Error as error:
        # A quoted field running over many lines (an unclosed quote) exceeds csv's field limit.
        raise DataError(f"{path}:{reader.line_num}: {error}; check the quotes on this line") from None
