"""Sentiraama (te): the reference's split when the files are the ones it used, else a dealt split.

Layout: ``<dir>/<lang>/product_pos.txt`` and ``product_neg.txt``. A review is one line; blank
lines and the corpus's separator lines (underscores only) are not reviews.

The reference split these two files once, offline, and ships the result as line indices
(microsoft/MetaXL ``data/data_index.txt``, sections "tir train/dev/test index and file"):
100 train, 103 dev and 100 test (file, line) pairs, 303 distinct review lines in all, 166 of
product_pos.txt and 137 of product_neg.txt. Its training code (``mtrain.py``) reads the splits
it made from them. The indices are data, shipped as ``sentiraama_split.json``.

Which files are the reference's: those whose review lines sit exactly at the line positions the
index names, file by file (166 review lines in product_pos.txt, 137 in product_neg.txt, and no
other review line). That fingerprints where the 303 reviews lie among the separator lines,
which needs no copy of the corpus to check. Lines are counted from 0, as Python's
``readlines()`` numbers them; the index file does not say, so counting from 1 is accepted too
(one set of positions cannot match both ways). Such files are split by the index, in its order.

Any other files (a user's own, an edited corpus): each class is shuffled with a fixed seed and
dealt out so that every split keeps the class balance: dev and test get 100 reviews each (a
third of the data each when there are fewer than 300), train the rest.

Either way the splits carry a one-line note saying which split was used.

The files are read as streams, never held whole: one pass per file finds its review lines'
positions (compared with the index's as they come) and counts them; the dealt split keeps each
class's shuffled order as 4-byte positions, and reviews are read when a run takes them.
"""

from __future__ import annotations

import json
import random
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

from metaxl_tune.data.errors import DataError
from metaxl_tune.data.examples import SaExample
from metaxl_tune.data.layout import SPLITS
from metaxl_tune.data.limits import check_tokens, read_lines
from metaxl_tune.data.streams import ExampleStream, ListStream, SelectedStream, SplitStreams

FILES: dict[str, str] = {"positive": "product_pos.txt", "negative": "product_neg.txt"}
LABELS: dict[str, int] = {"product_pos.txt": 1, "product_neg.txt": 0}
DEALT_SEED = 13
HELD_OUT = 100
INDEX_FILE = "sentiraama_split.json"


@dataclass(frozen=True)
class SplitIndex:
    """Per split, the (file name, line index) of each review, in order."""

    splits: dict[str, tuple[tuple[str, int], ...]]

    def positions(self, file: str, base: int = 0) -> set[int]:
        """The 0-based line positions this index names in ``file`` when it counts from ``base``."""
        return {line - base for entries in self.splits.values() for name, line in entries if name == file}


@lru_cache(maxsize=1)
def reference_index() -> SplitIndex:
    """The reference's split (microsoft/MetaXL data/data_index.txt), shipped with the package."""
    document = json.loads(resources.files("metaxl_tune.data").joinpath(INDEX_FILE).read_text(encoding="utf-8"))
    return SplitIndex({
        split: tuple(zip(entries["file"], entries["line"])) for split, entries in document["splits"].items()
    })


def sentiraama_splits(files: dict[str, Path], language: str, index: SplitIndex | None = None) -> SplitStreams:
    """Train, dev and test from product_pos.txt / product_neg.txt (``files`` keyed positive/negative)."""
    index = index or reference_index()
    paths = {path.name: path for path in files.values()}
    surveys = {name: _survey(path, index) for name, path in paths.items()}
    base = next((base for base in (0, 1) if all(surveys[name].matches[base] for name in paths)), None)
    if base is not None:
        splits = _by_index(paths, index, base)
        counted = "0" if base == 0 else "1"
        note = (f"{language}: Sentiraama files match the reference's split index (microsoft/MetaXL "
                f"data/data_index.txt, lines counted from {counted}): split by it, {_sizes(splits)}")
        return SplitStreams(**splits, note=note)
    splits = _dealt(paths, {name: survey.reviews for name, survey in surveys.items()}, files["positive"].parent)
    note = (f"{language}: Sentiraama files are not the ones the reference's split index names "
            f"(its review lines are elsewhere): dealt split (seed {DEALT_SEED}), {_sizes(splits)}")
    return SplitStreams(**splits, note=note)


@dataclass
class _Survey:
    reviews: int
    matches: dict[int, bool]
    """Per base (0, 1): whether the review lines sit exactly at the index's positions."""


def _survey(path: Path, index: SplitIndex) -> _Survey:
    expected = {base: index.positions(path.name, base) for base in (0, 1)}
    matches = {base: True for base in (0, 1)}
    reviews = 0
    for position, _ in _reviews(path):
        reviews += 1
        for base in (0, 1):
            matches[base] = matches[base] and position in expected[base]
    if not reviews:
        raise DataError(f"{path}: has no reviews; write one review per line")
    return _Survey(reviews, {base: matches[base] and reviews == len(expected[base]) for base in (0, 1)})


def _by_index(paths: dict[str, Path], index: SplitIndex, base: int) -> dict[str, ExampleStream]:
    texts: dict[tuple[str, int], str] = {}
    for name, path in paths.items():
        wanted = index.positions(name, base)
        texts.update({(name, position + base): text for position, text in _reviews(path) if position in wanted})
    return {
        split: ListStream(f"{next(iter(paths.values())).parent} ({split} split)", [SaExample(texts[entry], LABELS[entry[0]]) for entry in index.splits[split]])
        for split in SPLITS
    }


def _dealt(paths: dict[str, Path], reviews: dict[str, int], folder: Path) -> dict[str, ExampleStream]:
    total = sum(reviews.values())
    held_out = min(HELD_OUT, total // 3)
    rng = random.Random(DEALT_SEED)
    parts: dict[str, list[tuple[ExampleStream, array]]] = {split: [] for split in SPLITS}
    for name in sorted(paths, key=lambda name: -LABELS[name]):  # positives first, as the seed's draws expect
        order = array("I", range(reviews[name]))
        rng.shuffle(order)
        share = round(held_out * reviews[name] / total)
        stream = _class_stream(paths[name])
        for split, positions in (("test", order[:share]), ("dev", order[share:2 * share]), ("train", order[2 * share:])):
            if not positions:
                raise DataError(
                    f"{folder}: too few reviews ({total}) for a {split} split with both classes; "
                    "add reviews to product_pos.txt and product_neg.txt"
                )
            parts[split].append((stream, positions))
    return {split: SelectedStream(f"{folder} ({split} split)", parts[split]) for split in SPLITS}


def _class_stream(path: Path) -> ExampleStream:
    label = LABELS[path.name]
    return ExampleStream(str(path), lambda: (SaExample(text, label) for _, text in _reviews(path)))


def _reviews(path: Path) -> Iterator[tuple[int, str]]:
    """(0-based line position, as ``readlines()`` numbers them, and text) of each review line;
    blank lines and separators of underscores are no reviews."""
    try:
        with path.open(encoding="utf-8-sig") as handle:
            for number, line in read_lines(path, handle):
                text = line.strip()
                if text and set(text) != {"_"}:
                    check_tokens(path, number, text)
                    yield number - 1, text
    except UnicodeDecodeError:
        raise DataError(f"{path}: is not UTF-8 text; re-encode it as UTF-8") from None


def _sizes(splits: dict[str, ExampleStream]) -> str:
    return " / ".join(f"{len(splits[split])} {split}" for split in SPLITS)
