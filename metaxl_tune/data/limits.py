"""Size limits on the text a data file may hold, checked while it is read.

The tiny models train their tokenizer on the data (model/tokenizer.py), and the `tokenizers`
trainer's time grows far faster than the length of a word: one 10 MB token keeps it busy for
hours, inside native code. Real words are short and real sentences are short, so anything
past these limits is a damaged or wrong file; it is refused with its file and line before any
tokenizer sees it.
"""

from __future__ import annotations

from pathlib import Path

from metaxl_tune.data.errors import DataError

MAX_TOKEN_CHARS = 1_000
"""The longest whitespace-separated token a data file may hold (characters)."""
MAX_LINE_CHARS = 100_000
"""The longest line a data file may hold (characters)."""


def check_line(path: Path | str, number: int | str, line: str) -> None:
    """Refuse a line longer than MAX_LINE_CHARS; ``number`` is its 1-based line (or "row N")."""
    if len(line) > MAX_LINE_CHARS:
        raise DataError(
            f"{_where(path, number)}: the line holds {len(line):,} characters, over the limit of "
            f"{MAX_LINE_CHARS:,} characters a line; split the text or remove the line"
        )


def check_tokens(path: Path | str, number: int | str, text: str) -> None:
    """Refuse a token (whitespace-separated) longer than MAX_TOKEN_CHARS."""
    if len(text) <= MAX_TOKEN_CHARS:
        return
    for token in text.split():
        if len(token) > MAX_TOKEN_CHARS:
            raise DataError(
                f"{_where(path, number)}: a token of {len(token):,} characters ({token[:20]!r}...), over the "
                f"limit of {MAX_TOKEN_CHARS:,} characters a token; split it or remove it"
            )


def check_text(path: Path | str, number: int | str, text: str) -> None:
    """Both limits on one line's text."""
    check_line(path, number, text)
    check_tokens(path, number, text)


def _where(path: Path | str, number: int | str) -> str:
    return f"{path}:{number}" if isinstance(number, int) else f"{path}: {number}"
