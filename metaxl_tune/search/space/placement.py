"""Readable names for RTN placements, valid for a model of any depth.

A search samples a placement as one readable label (so Optuna and MLflow show ``emb+last``)
and the label becomes ``RunConfig.rtn_layers`` only when the trial's config is built:

    emb       -> [0]           after the embeddings (paper L0)
    middle    -> ["middle"]    after layer depth // 2 (paper L6 on a 12-layer model)
    last      -> ["last"]      after the last layer (paper L12 on a 12-layer model)
    emb+last  -> [0, "last"]   several placements joined with ``+``
    6, 0+6    -> [6], [0, 6]   explicit layer indices (a YAML list [0, 6] is the same as 0+6)
"""

from __future__ import annotations

from typing import Any, Union

Placement = Union[int, str]

_NAMES: dict[str, Placement] = {"emb": 0, "middle": "middle", "last": "last"}
_HELP = "use emb, middle, last, a layer index, or a combination such as emb+last"


def _token(part: Any) -> str:
    if isinstance(part, bool) or not isinstance(part, (int, str)):
        raise ValueError(f"{part!r} is not a placement; {_HELP}")
    token = str(part).strip()
    if token not in _NAMES and not token.isdigit():
        raise ValueError(f"{token!r} is not a placement; {_HELP}")
    return token


def placement_label(value: Any) -> str:
    """The canonical label of a placement given as a label, a layer index or a list of those.

    >>> placement_label([0, "last"]), placement_label(" emb + last "), placement_label(6)
    ('0+last', 'emb+last', '6')
    """
    parts = value if isinstance(value, (list, tuple)) else str(value).split("+") if isinstance(value, str) else [value]
    if not parts:
        raise ValueError(f"an empty placement list; {_HELP}")
    return "+".join(_token(part) for part in parts)


def resolve_placement(value: Any) -> list[Placement]:
    """``RunConfig.rtn_layers`` for a label (``emb+last`` -> ``[0, "last"]``), an index or a list.

    >>> resolve_placement("emb+last"), resolve_placement("middle"), resolve_placement([0, 6])
    ([0, 'last'], ['middle'], [0, 6])
    """
    return [_NAMES[token] if token in _NAMES else int(token) for token in placement_label(value).split("+")]
