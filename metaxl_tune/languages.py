"""Language codes the toolkit knows, and the paper's related-source table (Table 1)."""

from __future__ import annotations

import re

# Paper Table 1: for each low-resource target, the related high-resource source.
RELATED_SOURCE: dict[str, str] = {
    "qu": "es",
    "cdo": "zh",
    "ilo": "id",
    "xmf": "ka",
    "mhr": "ru",
    "mi": "id",
    "tk": "tr",
    "gn": "es",
}

# Targets and sources used by the paper's SA experiments (ISO 639-1 codes).
SA_TARGETS = ("fa", "te")

_CODE = re.compile(r"^[a-z]{2,3}(-[a-z0-9]{2,8})*$")


def is_language_code(code: str) -> bool:
    """True for ISO-639-style codes such as ``en``, ``cdo`` or ``zh-yue`` (WikiAnn uses these)."""
    return bool(_CODE.match(code))


def resolve_source(source: str, target: str) -> str:
    """Turn the config's ``source`` (a code, ``en`` or ``related``) into a language code."""
    if source != "related":
        return source
    try:
        return RELATED_SOURCE[target]
    except KeyError:
        known = ", ".join(f"{t}->{s}" for t, s in RELATED_SOURCE.items())
        raise ValueError(
            f"source 'related' needs a target from paper Table 1 ({known}); "
            f"for target '{target}' pass a language code as source instead"
        ) from None
