"""Label sets and the example types every loader returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

# WikiAnn's ClassLabel order: hub datasets store tags as indices into this tuple.
NER_LABELS: tuple[str, ...] = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC")
SA_LABELS: tuple[str, ...] = ("negative", "positive")


@dataclass(frozen=True)
class NerExample:
    """One sentence: a tag from NER_LABELS per token."""

    tokens: tuple[str, ...]
    tags: tuple[str, ...]


@dataclass(frozen=True)
class SaExample:
    """One review: label 0 (negative) or 1 (positive)."""

    text: str
    label: int


Split = TypeVar("Split")


@dataclass(frozen=True)
class Splits(Generic[Split]):
    """The three splits of one language: lists of NerExample or of SaExample (``load_splits``),
    or streams read on demand (``streams.SplitStreams``)."""

    train: Split
    dev: Split
    test: Split
    note: str = ""
    """One line on how the splits were made, where the loader chose (Sentiraama's split); else empty."""

    def all(self) -> tuple[Split, Split, Split]:
        return self.train, self.dev, self.test
