"""``open_splits`` / ``load_splits``: one entry point over every data source, and the fingerprint of what it reads."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from metaxl_tune.config import RunConfig
from metaxl_tune.data.errors import DataError
from metaxl_tune.data.examples import Splits
from metaxl_tune.data.hub import WIKIANN, load_wikiann
from metaxl_tune.data.layout import language_dir
from metaxl_tune.data.lexicon import GENERATOR_VERSION
from metaxl_tune.data.panx import find_panx_files
from metaxl_tune.data.panx_scan import read_panx_splits
from metaxl_tune.data.sa import locate_sa_files, read_sa_splits
from metaxl_tune.data.streams import SplitStreams
from metaxl_tune.data.synthetic import check_synthetic_language, synthetic_splits
from metaxl_tune.data.tables import find_parquet_files, is_saved_dataset_dict, read_parquet_splits, read_saved_splits

# Part of every non-synthetic fingerprint: bump it whenever a reader's output changes.
READER_VERSION = "3"  # 2: Sentiraama split by the reference's index; separator lines dropped; 3: size and label checks


def open_splits(config: RunConfig, language: str) -> SplitStreams:
    """Train, dev and test of ``language`` for ``config.task`` from ``config.data``, as streams
    that read their files when iterated (see `streams`): nothing is held whole.

    ``config.data`` is "hub" (WikiAnn, NER only), "synthetic", or a directory holding one
    folder per language (NER: panx files, a save_to_disk DatasetDict or parquet files;
    SA: jsonl/tsv/csv splits or Sentiraama's product_pos.txt/product_neg.txt). Opening checks
    what it can without holding examples: the layout, and for SA every line and label.
    """
    if config.data == "synthetic":
        return synthetic_splits(config.task, language)
    if config.data == "hub":
        _require_ner_on_hub(config)
        return load_wikiann(language)
    folder = language_dir(Path(config.data), language)
    if config.task == "sa":
        return read_sa_splits(folder, config, language)
    if is_saved_dataset_dict(folder):
        return read_saved_splits(folder)
    if any(find_parquet_files(folder).values()):
        return read_parquet_splits(folder)
    return read_panx_splits(folder, language)


def load_splits(config: RunConfig, language: str) -> Splits[list]:
    """``open_splits`` read whole into lists: for small data and tests (a run samples the streams)."""
    streams = open_splits(config, language)
    return Splits(train=list(streams.train), dev=list(streams.dev), test=list(streams.test), note=streams.note)


def data_fingerprint(config: RunConfig, language: str) -> str:
    """A short hex digest that changes whenever the examples ``load_splits`` returns may change.

    It keys on-disk caches of encoded data, so besides the files read (resolved path, names,
    sizes, modification times) it covers the options that change how they are read.
    """
    parts: dict[str, object] = {"task": config.task, "language": language}
    if config.data == "synthetic":
        check_synthetic_language(language)
        parts.update(source="synthetic", version=GENERATOR_VERSION)
    elif config.data == "hub":
        _require_ner_on_hub(config)
        parts.update(source="hub", dataset=WIKIANN, version=READER_VERSION)
    else:
        folder = language_dir(Path(config.data), language).resolve()
        stats = [(str(path.relative_to(folder)), *_size_and_mtime(path)) for path in _files_read(config, folder)]
        parts.update(source=str(folder), files=stats, version=READER_VERSION)
        if config.task == "sa":
            parts.update(
                label_format=config.label_format_of(language),
                text_column=config.text_column,
                label_column=config.label_column,
            )
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode("utf-8")).hexdigest()[:16]


def _files_read(config: RunConfig, folder: Path) -> list[Path]:
    if config.task == "sa":
        return sorted(locate_sa_files(folder).values())
    if is_saved_dataset_dict(folder):
        return sorted(path for path in folder.rglob("*") if path.is_file())
    parquet = find_parquet_files(folder)
    files = parquet if any(parquet.values()) else find_panx_files(folder)
    return sorted(path for path in files.values() if path is not None)


def _size_and_mtime(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


def _require_ner_on_hub(config: RunConfig) -> None:
    if config.task != "ner":
        raise DataError(
            f"--data hub serves WikiAnn NER only; {config.task.upper()} has no hub dataset: "
            "pass --data DIR (jsonl/tsv/csv splits per language) or --data synthetic"
        )
