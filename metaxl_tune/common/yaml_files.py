"""The one way the project reads YAML (configs, search spaces, studies, saved run configs): with limits.

PyYAML's safe loader has none. A "billion laughs" file (a few lines of aliases of aliases)
constructs a small graph that every later step (validation, error messages) walks as a tree of
billions of nodes; a document nested 20,000 deep overflows the recursive composer. So, before
anything is built:

1. the file is read only up to ``MAX_YAML_BYTES``;
2. one pass over the parser's events (an iterative state machine: no recursion, no nodes)
   checks the nesting depth and the number of nodes the document would hold with every alias
   expanded, refusing either limit at the line that crosses it, in milliseconds;
3. the composed node graph is checked for a key given twice in one mapping (PyYAML keeps the
   last silently), naming the key and both lines.

Every refusal is one line ``<origin>: line N: <what> ; <what to change>``, raised as the
caller's own error type (a ValueError), so each command prints it as its other input errors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

MAX_YAML_BYTES = 1_000_000
"""The largest YAML file read (bytes); the project's configs, spaces and studies hold a few KB."""
MAX_YAML_DEPTH = 100
"""The deepest nesting of mappings and lists; the project's files nest three or four deep."""
MAX_YAML_NODES = 100_000
"""The most nodes (scalars, lists, mappings) a document may hold with every alias expanded."""

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MERGE_TAG = "tag:yaml.org,2002:merge"


class YamlError(ValueError):
    """A YAML file the project will not read; the message is one line naming the file (and line)."""


def read_yaml_text(path: str | Path, expected: str, error: type[ValueError] = YamlError) -> str:
    """A user-named YAML file's text, read only up to ``MAX_YAML_BYTES``; one line naming the file
    when it is larger, not UTF-8 (e.g. a binary file) or unreadable -- ``expected`` says what it
    should be."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_YAML_BYTES + 1)
    except OSError as problem:
        reason = (problem.strerror or str(problem)).lower()
        raise error(f"{path}: cannot read it ({reason}); {expected}") from None
    if len(data) > MAX_YAML_BYTES:
        raise error(f"{path}: holds over {MAX_YAML_BYTES:,} bytes, more than a YAML file of this project needs; "
                    f"{expected}")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as problem:
        raise error(f"{path}: not UTF-8 text (byte {problem.start}); {expected}") from None


def parse_yaml(text: str, origin: str, error: type[ValueError] = YamlError) -> Any:
    """The document in ``text`` as Python values (safe types only), within the limits above.

    ``origin`` (the file, or a shipped name) starts every message. An empty document is None.
    """
    if len(text) > MAX_YAML_BYTES:
        raise error(f"{origin}: holds over {MAX_YAML_BYTES:,} characters, more than a YAML file of this "
                    "project needs; check that it is the right file")
    try:
        _check_shape(text, origin, error)
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            _refuse_duplicate_keys(node, origin, error)
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.YAMLError as problem:
        mark = getattr(problem, "problem_mark", None) or getattr(problem, "context_mark", None)
        where = f" line {mark.line + 1}:" if mark else ""
        reason = getattr(problem, "problem", None) or "parse error"
        if "nesting depth" in reason:  # libyaml's own limit (1000), met before ours in flow style
            raise error(_too_deep(origin, mark.line if mark else 0)) from None
        raise error(f"{origin}:{where} not valid YAML ({reason}); fix the file") from None


def _check_shape(text: str, origin: str, error: type[ValueError]) -> None:
    """Depth and expanded size from the events alone, before any node is built."""
    open_collections: list[list] = []  # per open list or mapping: [expanded size, anchor]
    expanded: dict[str, int] = {}  # anchor -> expanded size of what it names
    total = 0

    def count(size: int, event: yaml.Event) -> None:
        nonlocal total
        if open_collections:
            open_collections[-1][0] += size
            size = open_collections[-1][0]
        else:
            total += size
            size = total
        if size > MAX_YAML_NODES:
            raise error(f"{origin}: line {event.start_mark.line + 1}: the document would hold over "
                        f"{MAX_YAML_NODES:,} values once its aliases (*name) are expanded; write the values out "
                        "or use fewer aliases")

    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.CollectionStartEvent):
            open_collections.append([1, event.anchor])
            if len(open_collections) > MAX_YAML_DEPTH:
                raise error(_too_deep(origin, event.start_mark.line))
        elif isinstance(event, yaml.CollectionEndEvent):
            size, anchor = open_collections.pop()
            if anchor is not None:
                expanded[anchor] = size
            count(size, event)
        elif isinstance(event, yaml.ScalarEvent):
            if event.anchor is not None:
                expanded[event.anchor] = 1
            count(1, event)
        elif isinstance(event, yaml.AliasEvent):
            if event.anchor not in expanded and any(anchor == event.anchor for _, anchor in open_collections):
                raise error(f"{origin}: line {event.start_mark.line + 1}: alias *{event.anchor} refers to a list "
                            "or mapping that holds it; a value cannot contain itself")
            count(expanded.get(event.anchor, 1), event)  # an undefined alias: the composer names it


def _too_deep(origin: str, line: int) -> str:
    return f"{origin}: line {line + 1}: nested over {MAX_YAML_DEPTH} levels deep; a config, space or study nests a few levels"


def _refuse_duplicate_keys(root: yaml.Node, origin: str, error: type[ValueError]) -> None:
    """Every mapping of the node graph (each once, iteratively), keys compared as YAML reads them
    (``1`` and ``0x1`` are one key); merge keys (``<<``) are YAML's own way to override."""
    constructor = yaml.SafeLoader("")  # for key scalars only: no state shared with the real load
    pending, seen_nodes = [root], set()
    while pending:
        node = pending.pop()
        if id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first_nodes: dict[Any, yaml.Node] = {}
            for key_node, value_node in node.value:
                pending.extend((key_node, value_node))
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE_TAG:
                    continue
                key = constructor.construct_object(key_node)
                try:
                    first = first_nodes.setdefault(key, key_node)
                except TypeError:
                    continue
                if first is not key_node:
                    lines = first.start_mark.line + 1, key_node.start_mark.line + 1
                    raise error(f"{origin}: line {lines[1]}: key {key!r} appears twice in one mapping (lines "
                                f"{lines[0]} and {lines[1]}); keep one")
        elif isinstance(node, yaml.SequenceNode):
            pending.extend(node.value)

