"""WikiAnn "panx" text files: ``lang:token<TAB>TAG`` per line, a blank line between sentences.

Files ``train``, ``dev`` (or ``validation``) and ``test``, optionally with a ``.txt`` or
``.tsv`` suffix; ``-DOCSTART-`` lines are ignored. The ``lang:`` prefix is optional, decided per
file by its first token line: once a file uses it, every line must carry the folder's
language, so a file copied into the wrong language folder fails instead of training silently.
A line holds exactly two tab-separated columns: a third (``a<TAB>b<TAB>O``, a CoNLL file with
more columns) is refused with its line, not read as the token ``"a\\tb"``. A sentence holds at
most ``MAX_SENTENCE_TOKENS`` tokens.

This module reads lines one by one and is the authority on what a file means and on every
error's wording. Each split is a `PanxStream` (`panx_scan`, which also opens the splits): counting and sampling a large
file check it in blocks at C speed and hand only the sentences taken, or a block that does
not pass, to the reader here.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from metaxl_tune.common.languages import is_language_code
from metaxl_tune.data.errors import DataError
from metaxl_tune.data.examples import NER_LABELS, NerExample
from metaxl_tune.data.layout import find_split_files
from metaxl_tune.data.limits import MAX_SENTENCE_TOKENS, check_line, check_tokens

PANX_SUFFIXES: tuple[str, ...] = ("", ".txt", ".tsv")
_TAGS = frozenset(NER_LABELS)


def find_panx_files(folder: Path) -> dict[str, Path | None]:
    return find_split_files(folder, PANX_SUFFIXES)


@dataclass
class FileState:
    """What a file's earlier lines decided: its ``lang:`` prefix ("" for none, None until its
    first token line)."""

    path: Path
    language: str
    prefix: str | None = None


def is_token_line(line: str) -> bool:
    """Whether a line (without its end) holds a token: not blank and not ``-DOCSTART-``."""
    return bool(line.strip()) and not line.startswith("-DOCSTART-")


def parse_lines(state: FileState, number: int, lines: Sequence[str]) -> Iterator[NerExample]:
    """The sentences of ``lines`` (without their ends; the first is line ``number`` of the file),
    each line checked; ``lines`` end where a sentence ends or where the file does."""
    path, language = state.path, state.language
    tokens: list[str] = []
    tags: list[str] = []
    for number, line in enumerate(lines, start=number):
        check_line(path, number, line)
        if not is_token_line(line):
            if tokens:
                yield NerExample(tuple(tokens), tuple(tags))
                tokens, tags = [], []
            continue
        columns = line.split("\t")
        token, tag = columns[0], columns[-1].strip()
        if len(columns) != 2 or not token.strip() or not tag:
            got = f"{len(columns)} tab-separated columns in" if len(columns) > 2 else "got"
            raise DataError(
                f"{path}:{number}: expected 'token<TAB>TAG' or '{language}:token<TAB>TAG' "
                f"({got} {line[:200]!r}); separate one non-empty token and its tag by one tab"
            )
        if state.prefix is None:
            state.prefix = _file_prefix(path, number, token, language)
        token = _strip_prefix(path, number, token, state.prefix, language)
        check_tokens(path, number, token)
        if tag not in _TAGS:
            raise DataError(f"{path}:{number}: unknown tag {tag!r}; allowed tags: {', '.join(NER_LABELS)}")
        tokens.append(token)
        tags.append(tag)
        if len(tokens) > MAX_SENTENCE_TOKENS:
            raise DataError(
                f"{path}:{number}: a sentence of over {MAX_SENTENCE_TOKENS:,} tokens, the limit a sentence; "
                "separate the sentences by blank lines"
            )
    if tokens:
        yield NerExample(tuple(tokens), tuple(tags))


def _file_prefix(path: Path, number: int, token: str, language: str) -> str:
    head, colon, rest = token.partition(":")
    if not (colon and rest and is_language_code(head)):
        return ""
    if head != language:
        raise DataError(_wrong_language(path, number, head, language))
    return f"{language}:"


def _strip_prefix(path: Path, number: int, token: str, prefix: str, language: str) -> str:
    if not prefix:
        return token
    if token.startswith(prefix) and len(token) > len(prefix):
        return token[len(prefix):]
    head, colon, _ = token.partition(":")
    if colon and is_language_code(head) and head != language:
        raise DataError(_wrong_language(path, number, head, language))
    raise DataError(
        f"{path}:{number}: token {token!r} lacks the '{prefix}' prefix that the file's first line uses; "
        "prefix every token or none"
    )


def _wrong_language(path: Path, number: int, found: str, language: str) -> str:
    return (
        f"{path}:{number}: token prefix '{found}:' names another language than the folder '{language}'; "
        f"move the file to the '{found}' folder or fix its prefixes"
    )
