"""The one rule for every name a user gives (searches, ablations, studies, run ids).

A name becomes a folder under the runs folder and a tag value in MLflow, so it must be a
single plain path component: it cannot climb out (``..``), nest (``/``), hide (a leading
``.``), break a line, or grow past what file systems and MLflow's UI handle well.
"""

from __future__ import annotations

import re

MAX_NAME_LENGTH = 100
_ALLOWED = re.compile(r"[A-Za-z0-9_.-]+")
RULE = (f"a name is 1 to {MAX_NAME_LENGTH} characters of letters, digits, '-', '_' and '.', "
        "not starting with '.'")


class InvalidName(ValueError):
    """A name breaks the rule; the message names the flag and states the rule."""


def name_problem(name: str) -> str | None:
    """What is wrong with ``name`` under the rule, or None when it is a valid name."""
    if not name:
        return "is empty"
    if len(name) > MAX_NAME_LENGTH:
        return f"has {len(name)} characters"
    # fullmatch with an ASCII class: str.isalnum() would let other scripts' letters and digits through.
    if not _ALLOWED.fullmatch(name):
        bad = next(char for char in name if not _ALLOWED.fullmatch(char))
        return f"holds {bad!r}"
    if name.startswith("."):
        return "starts with '.'"
    return None


def check_name(name: str, flag: str = "--name") -> str:
    """``name`` when it follows the rule; else one line naming ``flag`` and stating the rule."""
    problem = name_problem(name)
    if problem is not None:
        shown = repr(name) if len(name) <= 60 else repr(name[:40]) + "..."  # one readable line, however long
        raise InvalidName(f"{flag} {shown}: the name {problem}; {RULE}")
    return name


def derived_name(base: str, suffix: str) -> str:
    """A name made from a valid name and a suffix (``<search>-rerun-<time>``), shortened at the
    front part so that it stays within the rule's length."""
    return check_name(base[: MAX_NAME_LENGTH - len(suffix)] + suffix)
