"""Size limits on the text a data file may hold, checked while it is read.

The tiny models train their tokenizer on the data (model/tokenizer.py), and the `tokenizers`
trainer's time grows far faster than the length of a word: one 10 MB token keeps it busy for
hours, inside native code. Real words are short and real sentences are short, so anything
past these limits is a damaged or wrong file; it is refused with its file and line before any
tokenizer sees it. Lines are read at most ``MAX_LINE_CHARS`` (+ its end) at a time, so a file
with one huge line (a binary file, a dump without line breaks) is refused after reading that
much of it, not after holding the whole line in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from metaxl_tune.data.errors import DataError

MAX_TOKEN_CHARS = 1_000
"""The longest whitespace-separated token a data file may hold (characters)."""
MAX_LINE_CHARS = 100_000
"""The longest line a data file may hold (characters)."""
MAX_SENTENCE_TOKENS = 10_000
"""The most tokens (lines) one NER sentence may hold: far past any real sentence, so a file
without blank lines between its sentences is refused instead of read as one sentence held whole."""


def read_lines(path: Path | str, handle: TextIO) -> Iterator[tuple[int, str]]:
    """Each line of ``handle`` as (1-based number, line with its end), refusing one longer than
    MAX_LINE_CHARS before reading past the limit."""
    number = 0
    while True:
        line = handle.readline(MAX_LINE_CHARS + 2)  # room for the limit and "\r\n"
        if not line:
            return
        number += 1
        check_line(path, number, line.rstrip("\r\n"))
        yield number, line


def check_line(path: Path | str, number: int | str, line: str) -> None:
    """Refuse a line longer than MAX_LINE_CHARS; ``number`` is its 1-based line (or "row N")."""
    if len(line) > MAX_LINE_CHARS:
        raise DataError(
            f"{_where(path, number)}: the line holds over {MAX_LINE_CHARS:,} characters, the limit a line; "
            "split the text or remove the line"
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
