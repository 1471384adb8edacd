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

# The languages `--data synthetic` has a grammar for (and `tiny-pretrained` is pre-trained on):
# English, the paper's NER targets and their related sources (Table 1), and the SA targets.
# The generator could make up words for any code, but a run on a language no one chose to
# model would train on an invented language without saying so.
SYNTHETIC_LANGUAGES: tuple[str, ...] = tuple(dict.fromkeys(("en", *RELATED_SOURCE, *RELATED_SOURCE.values(), *SA_TARGETS)))


def synthetic_language_problem(code: str) -> str | None:
    """Why ``--data synthetic`` cannot serve ``code`` (naming the languages it has), or None."""
    if code in SYNTHETIC_LANGUAGES:
        return None
    return (f"--data synthetic has no grammar for '{code}'; its languages are {', '.join(sorted(SYNTHETIC_LANGUAGES))} "
            "(or pass --data hub or --data DIR for other languages)")

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
