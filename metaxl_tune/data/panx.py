"""WikiAnn "panx" text files: ``lang:token<TAB>TAG`` per line, a blank line between sentences.

Files ``train``, ``dev`` (or ``validation``) and ``test``, optionally with a ``.txt`` or
``.tsv`` suffix; ``-DOCSTART-`` lines are ignored. The ``lang:`` prefix is optional, decided per
file by its first token line: once a file uses it, every line must carry the folder's
language, so a file copied into the wrong language folder fails instead of training silently.
"""

from __future__ import annotations

from pathlib import Path

from metaxl_tune.data.errors import DataError
from metaxl_tune.data.examples import NER_LABELS, NerExample, Splits
from metaxl_tune.data.layout import find_split_files, require_split_files
from metaxl_tune.data.limits import check_line, check_tokens
from metaxl_tune.languages import is_language_code

PANX_SUFFIXES: tuple[str, ...] = ("", ".txt", ".tsv")
_TAGS = frozenset(NER_LABELS)


def find_panx_files(folder: Path) -> dict[str, Path | None]:
    return find_split_files(folder, PANX_SUFFIXES)


def read_panx_splits(folder: Path, language: str) -> Splits:
    files = require_split_files(folder, find_panx_files(folder), PANX_SUFFIXES, "panx")
    return Splits(**{split: read_panx_file(path, language) for split, path in files.items()})


def read_panx_file(path: Path, language: str) -> list[NerExample]:
    examples: list[NerExample] = []
    tokens: list[str] = []
    tags: list[str] = []
    prefix: str | None = None
    try:
        with path.open(encoding="utf-8-sig") as lines:
            for number, line in enumerate(lines, start=1):
                line = line.rstrip("\r\n")
                check_line(path, number, line)
                if not line.strip() or line.startswith("-DOCSTART-"):
                    if tokens:
                        examples.append(NerExample(tuple(tokens), tuple(tags)))
                        tokens, tags = [], []
                    continue
                token, tab, tag = line.rpartition("\t")
                tag = tag.strip()
                if not tab or not token.strip() or not tag:
                    raise DataError(
                        f"{path}:{number}: expected 'token<TAB>TAG' or '{language}:token<TAB>TAG' "
                        f"(got {line!r}); separate one non-empty token and its tag by a tab"
                    )
                if prefix is None:
                    prefix = _file_prefix(path, number, token, language)
                token = _strip_prefix(path, number, token, prefix, language)
                check_tokens(path, number, token)
                if tag not in _TAGS:
                    raise DataError(f"{path}:{number}: unknown tag {tag!r}; allowed tags: {', '.join(NER_LABELS)}")
                tokens.append(token)
                tags.append(tag)
    except UnicodeDecodeError:
        raise DataError(f"{path}: is not UTF-8 text; re-encode it as UTF-8") from None
    if tokens:
        examples.append(NerExample(tuple(tokens), tuple(tags)))
    if not examples:
        raise DataError(f"{path}: has no sentences; add 'token<TAB>TAG' lines or remove the empty split")
    return examples


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
