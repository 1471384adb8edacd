"""NER splits held as `datasets` tables: hub downloads, ``save_to_disk`` folders, parquet files.

Columns ``tokens`` (a list of strings per sentence) and ``ner_tags`` (WikiAnn ClassLabel
indices, or the tag strings themselves).

The tables are memory-mapped Arrow files; each split is a stream (`streams`) that reads rows in
batches, so a run holds the rows it takes, not the table's columns as Python lists.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import datasets
import pyarrow

from metaxl_tune.data.errors import DataError
from metaxl_tune.data.limits import check_text
from metaxl_tune.data.examples import NER_LABELS, NerExample
from metaxl_tune.data.layout import SPLIT_NAMES, SPLITS, find_split_files, require_split_files
from metaxl_tune.data.streams import ExampleStream, SplitStreams

PARQUET_SUFFIXES: tuple[str, ...] = (".parquet",)
_TAGS = frozenset(NER_LABELS)
_BATCH = 1000


def is_saved_dataset_dict(folder: Path) -> bool:
    return (folder / "dataset_dict.json").is_file()


def find_parquet_files(folder: Path) -> dict[str, Path | None]:
    return find_split_files(folder, PARQUET_SUFFIXES)


def read_saved_splits(folder: Path) -> SplitStreams:
    """A ``DatasetDict.save_to_disk`` folder with train, validation (or dev) and test."""
    try:
        dataset_dict = datasets.load_from_disk(str(folder))
    except (FileNotFoundError, ValueError) as error:
        reason = str(error).splitlines()[0]
        raise DataError(
            f"{folder}: cannot load the saved dataset ({reason}); save it again with save_to_disk"
        ) from None
    return splits_from_dataset_dict(dataset_dict, str(folder))


def read_parquet_splits(folder: Path) -> SplitStreams:
    files = require_split_files(folder, find_parquet_files(folder), PARQUET_SUFFIXES, "parquet")
    try:
        loaded = datasets.load_dataset("parquet", data_files={split: str(path) for split, path in files.items()})
    except (datasets.exceptions.DatasetGenerationError, pyarrow.ArrowInvalid) as error:
        reason = str(error.__cause__ or error).splitlines()[0]
        raise DataError(
            f"{folder}: cannot read the parquet files ({reason}); write them with datasets' Dataset.to_parquet"
        ) from None
    return SplitStreams(**{split: table_stream(loaded[split], str(files[split])) for split in SPLITS})


def splits_from_dataset_dict(dataset_dict: datasets.DatasetDict, where: str) -> SplitStreams:
    chosen = {}
    for split in SPLITS:
        names = [name for name in SPLIT_NAMES[split] if name in dataset_dict]
        if not names:
            raise DataError(
                f"{where}: no {split} split (splits present: {', '.join(dataset_dict) or 'none'}); "
                f"add a split named {' or '.join(SPLIT_NAMES[split])}"
            )
        chosen[split] = table_stream(dataset_dict[names[0]], f"{where} ({names[0]} split)")
    return SplitStreams(**chosen)


def table_stream(dataset: datasets.Dataset, where: str) -> ExampleStream:
    """The table's sentences as a stream; its columns and size are checked here, its rows as read."""
    missing = [column for column in ("tokens", "ner_tags") if column not in dataset.column_names]
    if missing:
        raise DataError(
            f"{where}: no column {missing[0]!r} (columns present: {', '.join(dataset.column_names)}); "
            "NER tables need 'tokens' and 'ner_tags'"
        )
    if len(dataset) == 0:
        raise DataError(f"{where}: has no sentences; add rows or remove the empty split")
    return _TableStream(dataset.select_columns(["tokens", "ner_tags"]), _class_label_names(dataset.features["ner_tags"]),
                        where)


class _TableStream(ExampleStream):
    """Rows read in batches of _BATCH; ``take`` selects rows by index, without reading the others."""

    def __init__(self, dataset: datasets.Dataset, names: tuple[str, ...], where: str):
        self._dataset, self._names = dataset, names
        # The count is the table's, but counting is the pass that checks every row.
        super().__init__(where, lambda: self._rows(dataset, range(1, len(dataset) + 1)),
                         lambda: sum(1 for _ in self))

    def take(self, indices: Sequence[int]) -> list:
        return list(self._rows(self._dataset.select(indices), [index + 1 for index in indices]))

    def _rows(self, table: datasets.Dataset, numbers: Sequence[int]) -> Iterator[NerExample]:
        start = 0
        for batch in table.iter(batch_size=_BATCH):
            for offset, (tokens, tags) in enumerate(zip(batch["tokens"], batch["ner_tags"])):
                yield _example(tokens, tags, self._names, self.where, numbers[start + offset])
            start += len(batch["tokens"])


def _example(tokens: list, tags: list, names: tuple[str, ...], where: str, row: int) -> NerExample:
    tags = [_tag_name(tag, names, where, row) for tag in tags]
    if len(tokens) != len(tags) or not tokens:
        raise DataError(f"{where}: row {row}: {len(tokens)} tokens but {len(tags)} tags; give every token one tag")
    if not all(isinstance(token, str) and token.strip() for token in tokens):
        raise DataError(f"{where}: row {row}: empty or non-string token in {tokens!r}; drop or fix it")
    check_text(where, f"row {row}", " ".join(tokens))
    return NerExample(tuple(tokens), tuple(tags))


def _class_label_names(feature: object) -> tuple[str, ...]:
    # Hub datasets carry their own ClassLabel order; plain integer columns use WikiAnn's.
    inner = getattr(feature, "feature", None)
    return tuple(inner.names) if isinstance(inner, datasets.ClassLabel) else NER_LABELS


def _tag_name(tag: object, names: tuple[str, ...], where: str, row: int) -> str:
    if isinstance(tag, int) and not isinstance(tag, bool) and 0 <= tag < len(names):
        name = names[tag]
    elif isinstance(tag, str):
        name = tag
    else:
        raise DataError(f"{where}: row {row}: tag {tag!r} is not a tag index 0-{len(names) - 1} or a tag name")
    if name not in _TAGS:
        raise DataError(f"{where}: row {row}: unknown tag {name!r}; allowed tags: {', '.join(NER_LABELS)}")
    return name
