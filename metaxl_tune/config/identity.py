"""A config's identity: one stable id for every trial that trains the same searched values.

A seed-aware search (issue #25) runs one config several times, each with its own training seed;
`best` then ranks configs, not trials. Both need to know which trials are the same config, across
processes, resumes and metaxl-tune versions, so the id is a hash of the searched values' canonical
JSON (sorted keys; floats by ``repr``, which round-trips exactly), never Python's ``hash``
(salted per process) nor a trial id.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

CONFIG_ID_LENGTH = 12
"""Hex digits kept: 48 bits, so a clash among a search's configs (at most thousands) is ~1e-8."""


def _canonical(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        if value.is_integer() and math.isfinite(value):
            # 8 and 8.0 are one bottleneck: a space may give either, the config holds the same.
            return int(value)
        return repr(value)
    if isinstance(value, Mapping):
        return {str(key): _canonical(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(item) for item in value]
    return str(value)


def config_id(searched: Mapping[str, Any]) -> str:
    """The id of the config that ``searched`` (parameter name -> value, as sampled) describes."""
    text = json.dumps(_canonical(dict(searched)), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:CONFIG_ID_LENGTH]
