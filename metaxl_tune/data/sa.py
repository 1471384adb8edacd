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

Splits are streams (`streams`). Opening them reads each file once, holding no review: every
line is checked, and the labels are counted per distinct value (a valid file has a handful),
which is all the format detection and the label-count checks need. Reviews are read again only
when a run takes them.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from metaxl_tune.config import RunConfig
from metaxl_tune.data.errors import DataError
from metaxl_tune.data.examples import SaExample
from metaxl_tune.data.layout import SPLITS, find_split_files, require_split_files
from metaxl_tune.data.limits import check_tokens, read_lines
from metaxl_tune.data.sa_labels import EXPECTED, RawLabel, check_label_counts, detect_format, normalize, to_label
from metaxl_tune.data.sentiraama import FILES as SENTIRAAMA_FILES
from metaxl_tune.data.sentiraama import sentiraama_splits
from metaxl_tune.data.streams import ExampleStream, SplitStreams

SA_SUFFIXES: tuple[str, ...] = (".jsonl", ".tsv", ".csv")
TEXT_COLUMNS: tuple[str, ...] = ("text", "review_body", "sentence", "review")
LABEL_COLUMNS: tuple[str, ...] = ("label", "stars", "polarity", "sentiment")
MAX_LABEL_VALUES = 100
"""Distinct raw labels a survey keeps; every format has fewer than ten, so a file past this is
no label column the auto-detection could read (a text column, ids)."""

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


def read_sa_splits(folder: Path, config: RunConfig, language: str) -> SplitStreams:
    files = locate_sa_files(folder)
    if "positive" in files:
        return sentiraama_splits(files, language)
    label_format, flag = config.label_format_of(language), config.label_format_flag(language)
    train = _survey(files["train"], config, None if label_format == "auto" else label_format, flag)
    if label_format == "auto":
        label_format = detect_format(train.labels, str(files["train"]), flag=flag)
    surveys = {"train": train, **{split: _survey(files[split], config, label_format, flag) for split in ("dev", "test")}}
    streams = {}
    for split in SPLITS:
        path, survey = files[split], surveys[split]
        count = survey.check(path, label_format, flag, train=split == "train")
        streams[split] = ExampleStream(
            str(path), lambda path=path: _examples(path, config, label_format, flag), lambda count=count: count
        )
    return SplitStreams(**streams)


@dataclass
class _Survey:
    """One pass over a split's records: how many there are and each distinct raw label's count."""

    records: int = 0
    labels: dict[RawLabel, int] = field(default_factory=dict)

    def check(self, path: Path, label_format: str, flag: str, *, train: bool) -> int:
        """The number of reviews the format keeps, after refusing a split it reads wrongly."""
        kept = sum(count for value, count in self.labels.items() if to_label(value, label_format) is not None)
        if not kept:
            raise DataError(f"{path}: no reviews left once neutral labels are dropped; add positive and negative ones")
        check_label_counts(str(path), label_format, flag, self.labels, train=train)
        return kept


def _survey(path: Path, config: RunConfig, label_format: str | None, flag: str) -> _Survey:
    """Counts of ``path``'s labels; with a known format, a label outside it is refused at its line."""
    survey = _Survey()
    for line, _, raw in _records(path, config):
        survey.records += 1
        if raw in survey.labels:
            survey.labels[raw] += 1
            continue
        if label_format is not None:
            _label(path, line, raw, label_format, flag)
        survey.labels[raw] = 1
        if len(survey.labels) > MAX_LABEL_VALUES:
            detect_format(survey.labels, str(path), flag=flag)  # refuses: no format has this many values
    return survey


def _label(path: Path, line: int, raw: RawLabel, label_format: str, flag: str) -> int | None:
    try:
        return to_label(raw, label_format)
    except ValueError:
        raise DataError(
            f"{path}:{line}: label {raw!r} is not a {label_format} label ({EXPECTED[label_format]}); "
            f"fix the value or pass another {flag}"
        ) from None


def _examples(path: Path, config: RunConfig, label_format: str, flag: str) -> Iterator[SaExample]:
    for line, text, raw in _records(path, config):
        label = _label(path, line, raw, label_format, flag)
        if label is not None:
            yield SaExample(text, label)


def _records(path: Path, config: RunConfig) -> Iterator[Record]:
    rows = _read_jsonl(path) if path.suffix == ".jsonl" else _read_delimited(path)
    text_column = label_column = None
    records = 0
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
            records += 1
            yield line, text.strip(), normalize(label)
    except UnicodeDecodeError:
        raise DataError(f"{path}: is not UTF-8 text; re-encode it as UTF-8") from None
    if not records:
        raise DataError(f"{path}: has no reviews; add some or remove the empty split")


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
    with path.open(encoding="utf-8-sig") as handle:
        for number, line in read_lines(path, handle):
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
    for _, line in read_lines(path, handle):
        yield line


def _csv_rows(path: Path, reader: csv.DictReader) -> Iterator[dict]:
    try:
        yield from reader
    except csv.Error as error:
        # A quoted field running over many lines (an unclosed quote) exceeds csv's field limit.
        raise DataError(f"{path}:{reader.line_num}: {error}; check the quotes on this line") from None
