"""Counting and sampling panx files in blocks, at C speed, without holding the file.

A panx line is a few bytes (``tk:word<TAB>O``): a 1 GB file holds about 100 million, and the
line-by-line reader (`panx.parse_lines`, a few microseconds a line) would take minutes for each
pass that counts the sentences or takes a sample. So a pass reads the file in blocks of about
``_BLOCK_CHARS`` characters, each extended to the end of a sentence, and checks a whole block
with one regular expression that accepts only lines the reader accepts (the expression is
stricter, never looser). A block that passes is split into sentences by its blank lines, and
only the sentences taken are parsed, by the reader. A block that does not pass (or the first
one, which decides the file's ``lang:`` prefix) goes to the reader whole, which raises the
error with its file and line, or reads what the expression was too strict for.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from functools import lru_cache
from itertools import groupby
from pathlib import Path

from metaxl_tune.data.errors import DataError
from metaxl_tune.data.examples import NER_LABELS, NerExample
from metaxl_tune.data.limits import MAX_LINE_CHARS, MAX_SENTENCE_TOKENS, MAX_TOKEN_CHARS
from metaxl_tune.data.layout import require_split_files
from metaxl_tune.data.panx import PANX_SUFFIXES, FileState, find_panx_files, is_token_line, parse_lines
from metaxl_tune.data.streams import ExampleStream, SplitStreams

_BLOCK_CHARS = 1 << 20
_SPACE = r"[^\S\t\n]"  # whitespace other than a tab or a line end
# Whitespace-separated pieces of at most MAX_TOKEN_CHARS; possessive, so a longer piece fails
# at once instead of backtracking.
_TOKEN = rf"(?:\S{{1,{MAX_TOKEN_CHARS}}}+(?:{_SPACE}++|(?=\t)))++"
_TAG = "(?:" + "|".join(re.escape(tag) for tag in NER_LABELS) + ")"


@lru_cache(maxsize=None)
def _valid_block(prefix: str) -> re.Pattern:
    """Lines the reader accepts once the file's prefix is ``prefix``: ``-DOCSTART-`` lines,
    blank lines, and ``<prefix>token<TAB>TAG`` lines, each ended by a newline."""
    token_line = rf"{re.escape(prefix)}{_SPACE}*+{_TOKEN}\t{_SPACE}*+{_TAG}{_SPACE}*+"
    return re.compile(rf"(?:(?:-DOCSTART-[^\n]*+|{token_line}|[^\S\n]*+)\n)*+")


def read_panx_splits(folder: Path, language: str) -> SplitStreams:
    files = require_split_files(folder, find_panx_files(folder), PANX_SUFFIXES, "panx")
    return SplitStreams(**{split: PanxStream(path, language) for split, path in files.items()})


class PanxStream(ExampleStream):
    """One panx file as a stream: iterating parses every line; ``len`` and ``take`` scan blocks."""

    def __init__(self, path: Path, language: str):
        self.path, self.language = path, language
        super().__init__(str(path), self._read, self._count_sentences)

    def _read(self) -> Iterator[NerExample]:
        state = FileState(self.path, self.language)
        found = 0
        for number, lines in _blocks(self.path):
            for example in parse_lines(state, number, lines):
                found += 1
                yield example
        _require_sentences(self.path, found)

    def _count_sentences(self) -> int:
        state = FileState(self.path, self.language)
        found = 0
        for number, lines in _blocks(self.path):
            runs = _sentence_runs(state, lines)
            found += len(runs) if runs is not None else sum(1 for _ in parse_lines(state, number, lines))
        return _require_sentences(self.path, found)

    def take(self, indices: Sequence[int]) -> list:
        if not indices:
            return []
        slots = {index: slot for slot, index in enumerate(indices)}
        chosen: list = [None] * len(indices)
        last, state, first = max(indices), FileState(self.path, self.language), 0
        for number, lines in _blocks(self.path):
            runs = _sentence_runs(state, lines)
            if runs is None:
                sentences = list(parse_lines(state, number, lines))
            else:
                # Only the sentences taken are built (the block already passed the reader's rules).
                sentences = [next(parse_lines(state, number + start, lines[start:stop]))
                             if first + offset in slots else None for offset, (start, stop) in enumerate(runs)]
            for offset, sentence in enumerate(sentences):
                slot = slots.get(first + offset)
                if slot is not None:
                    chosen[slot] = sentence
            first += len(sentences)
            if first > last:
                return chosen
        raise IndexError(f"{self.path}: sentence {last} asked for, but the file holds {first}")


def _sentence_runs(state: FileState, lines: list[str]) -> list[tuple[int, int]] | None:
    """(start, stop) of each sentence's lines in a block that passes the expression; None when
    the block must go to the reader (it fails, or the file's prefix is not yet known)."""
    if state.prefix is None or not lines or max(map(len, lines)) > MAX_LINE_CHARS:
        return None
    text = "\n".join(lines) + "\n"
    if _valid_block(state.prefix).fullmatch(text) is None:
        return None
    # is_token_line per line; without -DOCSTART- lines, a line's strip() alone decides (at C speed).
    flags = map(is_token_line, lines) if "-DOCSTART-" in text else map(bool, map(str.strip, lines))
    runs, position = [], 0
    for is_token, group in groupby(flags):
        length = len(list(group))
        if is_token:
            if length > MAX_SENTENCE_TOKENS:
                return None
            runs.append((position, position + length))
        position += length
    return runs


def _blocks(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(number of the first line, lines without their ends) in blocks of about _BLOCK_CHARS,
    each ending where a sentence ends (or at most MAX_SENTENCE_TOKENS lines later). Reading
    never goes past MAX_LINE_CHARS into a line: a longer one ends a block, where it is refused."""
    try:
        with path.open(encoding="utf-8-sig") as handle:
            number = 1
            while True:
                text = handle.read(_BLOCK_CHARS)
                if not text:
                    return
                if not text.endswith("\n"):
                    text += handle.readline(MAX_LINE_CHARS + 2)
                lines = text.split("\n")
                if lines[-1] == "":
                    lines.pop()
                for _ in range(MAX_SENTENCE_TOKENS + 1):
                    if not is_token_line(lines[-1]) or len(lines[-1]) > MAX_LINE_CHARS:
                        break
                    line = handle.readline(MAX_LINE_CHARS + 2)
                    if not line:
                        break
                    lines.append(line.removesuffix("\n"))
                yield number, lines
                number += len(lines)
    except UnicodeDecodeError:
        raise DataError(f"{path}: is not UTF-8 text; re-encode it as UTF-8") from None


def _require_sentences(path: Path, found: int) -> int:
    if not found:
        raise DataError(f"{path}: has no sentences; add 'token<TAB>TAG' lines or remove the empty split")
    return found
