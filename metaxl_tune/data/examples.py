"""Label sets and the example types every loader returns."""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class Splits:
    """The three splits of one language, each a list of NerExample or of SaExample."""

    train: list
    dev: list
    test: list
    note: str = ""
    """One line on how the splits were made, where the loader chose (Sentiraama's split); else empty."""
