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
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

from metaxl_tune.data.errors import DataError
from metaxl_tune.data.limits import check_text
from metaxl_tune.data.examples import SaExample, Splits
from metaxl_tune.data.layout import SPLITS

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


def sentiraama_splits(files: dict[str, Path], language: str, index: SplitIndex | None = None) -> Splits:
    """Train, dev and test from product_pos.txt / product_neg.txt (``files`` keyed positive/negative)."""
    index = index or reference_index()
    lines = {path.name: _read_lines(path) for path in files.values()}
    base = _matching_base(lines, index)
    if base is not None:
        splits = {
            split: [SaExample(lines[name][line - base], LABELS[name]) for name, line in index.splits[split]]
            for split in SPLITS
        }
        counted = "0" if base == 0 else "1"
        note = (f"{language}: Sentiraama files match the reference's split index (microsoft/MetaXL "
                f"data/data_index.txt, lines counted from {counted}): split by it, {_sizes(splits)}")
        return Splits(**splits, note=note)
    splits = _dealt(lines, files)
    note = (f"{language}: Sentiraama files are not the ones the reference's split index names "
            f"(its review lines are elsewhere): dealt split (seed {DEALT_SEED}), {_sizes(splits)}")
    return Splits(**splits, note=note)


def _matching_base(lines: dict[str, list[str]], index: SplitIndex) -> int | None:
    reviews = {
        name: {position for position, text in enumerate(file_lines) if text} for name, file_lines in lines.items()
    }
    for base in (0, 1):
        if all(reviews[name] == index.positions(name, base) for name in lines):
            return base
    return None


def _dealt(lines: dict[str, list[str]], files: dict[str, Path]) -> dict[str, list[SaExample]]:
    classes = {LABELS[name]: [text for text in file_lines if text] for name, file_lines in lines.items()}
    total = sum(len(reviews) for reviews in classes.values())
    held_out = min(HELD_OUT, total // 3)
    rng = random.Random(DEALT_SEED)
    splits: dict[str, list[SaExample]] = {split: [] for split in SPLITS}
    for label in (1, 0):
        reviews = classes[label]
        rng.shuffle(reviews)
        share = round(held_out * len(reviews) / total)
        parts = {"test": reviews[:share], "dev": reviews[share : 2 * share], "train": reviews[2 * share :]}
        for split, part in parts.items():
            splits[split].extend(SaExample(text, label) for text in part)
    for split, examples in splits.items():
        if len({example.label for example in examples}) < 2:
            raise DataError(
                f"{files['positive'].parent}: too few reviews ({total}) for a {split} split with both classes; "
                "add reviews to product_pos.txt and product_neg.txt"
            )
    return splits


def _read_lines(path: Path) -> list[str]:
    """Every line of ``path``, stripped, numbered as ``readlines()`` numbers them; a line that
    is no review (blank, or a separator of underscores) is ``""``."""
    try:
        with path.open(encoding="utf-8-sig") as handle:
            lines = [line.strip() for line in handle.readlines()]
    except UnicodeDecodeError:
        raise DataError(f"{path}: is not UTF-8 text; re-encode it as UTF-8") from None
    for number, line in enumerate(lines, start=1):
        check_text(path, number, line)
    lines = ["" if set(line) == {"_"} else line for line in lines]
    if not any(lines):
        raise DataError(f"{path}: has no reviews; write one review per line")
    return lines


def _sizes(splits: dict[str, list[SaExample]]) -> str:
    return " / ".join(f"{len(splits[split])} {split}" for split in SPLITS)
