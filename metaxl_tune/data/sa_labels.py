"""Sentiment label formats, and telling them apart from the values of a train split.

Formats (``--label-format``), mapped to 0 = negative and 1 = positive:

- ``binary``: ``positive``/``negative`` or ``pos``/``neg`` (any case), or ``0``/``1``.
- ``stars`` (MARC): 1-2 negative, 4-5 positive, 3 dropped.
- ``polarity`` (SentiPers): -2/-1 negative, +1/+2 positive, 0 dropped.
- ``auto``: decided from the train split's values, first rule that matches:
  binary if every value is 0/1 or one of the binary words; polarity if every value is an
  integer in -2..2 and one is negative; stars if every value is an integer in 1..5 and one
  is 3 or more. Anything else (only 1 and 2, for instance) is ambiguous: pass the format.

Numbers may arrive as JSON numbers or as text (``"+1"``, ``"4.0"``); both mean the same.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from metaxl_tune.data.errors import DataError

RawLabel = int | str
_BINARY_WORDS = {"positive": 1, "pos": 1, "negative": 0, "neg": 0}
EXPECTED = {"binary": "0/1 or positive/negative", "stars": "1-5", "polarity": "-2..2"}


def normalize(value: object) -> RawLabel:
    """An integer where the value is one (in any spelling), else lower-cased text."""
    if isinstance(value, (bool, int)):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    text = str(value).strip()
    for parse in (int, float):
        try:
            number = parse(text)
        except ValueError:
            continue
        if float(number).is_integer():
            return int(number)
    return text.lower()


def detect_format(values: Iterable[RawLabel], where: str, *, flag: str = "--label-format") -> str:
    seen = set(values)
    numbers = {value for value in seen if isinstance(value, int)}
    if all(value in _BINARY_WORDS or value in (0, 1) for value in seen):
        return "binary"
    if numbers == seen and numbers <= set(range(-2, 3)) and min(numbers) < 0:
        return "polarity"
    if numbers == seen and numbers <= set(range(1, 6)) and max(numbers) >= 3:
        return "stars"
    shown = ", ".join(repr(value) for value in sorted(seen, key=str)[:10])
    more = f" and {len(seen) - 10} more" if len(seen) > 10 else ""
    raise DataError(
        f"{where}: cannot tell the label format from the values seen ({shown}{more}); "
        f"pass {flag} binary, stars or polarity"
    )


def to_label(value: RawLabel, label_format: str) -> int | None:
    """0 or 1, None for a neutral label that the format drops; ValueError if out of format."""
    if label_format == "binary":
        if value in (0, 1) and isinstance(value, int):
            return value
        if value in _BINARY_WORDS:
            return _BINARY_WORDS[value]
    elif isinstance(value, int):
        if label_format == "stars" and 1 <= value <= 5:
            return None if value == 3 else int(value >= 4)
        if label_format == "polarity" and -2 <= value <= 2:
            return None if value == 0 else int(value > 0)
    raise ValueError(value)


def check_label_counts(where: str, label_format: str, flag: str, counts: Mapping[RawLabel, int], *,
                       train: bool) -> None:
    """Refuse a split that ``label_format`` reads wrongly (``counts``: reviews per raw label
    value, all within the format): a train split whose several label values
    the format leaves as one class, or any split that loses more than half its reviews as
    neutral. Both are what a wrong format does (``polarity`` on 0/1 labels reads every 0 as
    neutral), and both would train or score silently on what is left. (A file that holds one
    label value only is the data's choice, not the format's.)"""
    labels = {value: to_label(value, label_format) for value in counts}
    positive = sum(count for value, count in counts.items() if labels[value] == 1)
    negative = sum(count for value, count in counts.items() if labels[value] == 0)
    total = sum(counts.values())
    dropped = total - positive - negative
    summary = f"{positive} positive, {negative} negative, {dropped} dropped as neutral of {total}"
    if dropped * 2 > total:
        problem = "drops more than half of the split"
    elif train and min(positive, negative) == 0 and len(counts) > 1:
        problem = f"leaves one class ({'positive' if positive else 'negative'} only)"
    else:
        return
    raise DataError(
        f"{where}: {flag} {label_format} {problem} ({summary}); pass the {flag} that fits the labels "
        f"({', '.join(f'{name}: {values}' for name, values in EXPECTED.items())}) or fix the file"
    )
