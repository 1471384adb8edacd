"""Options that a method or a task never reads: refused when the user set them explicitly.

Which fields each method and task reads is stated once, in ``run_config.METHODS_USING`` and
``run_config.TASKS_USING``.
"""

from __future__ import annotations

from typing import Any

from metaxl_tune.config.run_config import METHODS, METHODS_USING, TASKS_USING, ConfigError, RunConfig


def ignored_by_method(method: str, fields: Any) -> list[str]:
    """The ``fields`` (names) that ``method`` does not read, in RunConfig's field order."""
    return _ignored(method, fields, METHODS_USING, METHODS)


def refuse_ignored_options(method: str, given: Any, *, flags: bool = True) -> None:
    """Raise ConfigError when the user explicitly set a field that ``method`` ignores.

    Only explicitly given values are checked (flags, or the command line's base fields of a
    search): a full config such as ``best`` exports records every field, whatever the method.
    """
    _refuse("method", method, ignored_by_method(method, given), METHODS_USING, flags=flags, verbs=("uses", "use"))


def ignored_by_task(task: str, fields: Any) -> list[str]:
    """The ``fields`` (names) that ``task`` does not read, in RunConfig's field order."""
    return _ignored(task, fields, TASKS_USING, (task,))


def refuse_task_ignored_options(task: str, given: Any, *, flags: bool = True) -> None:
    """Raise ConfigError when the user explicitly set a field that ``task`` never reads (the
    SA readers' options on an NER run), as refuse_ignored_options does for methods."""
    _refuse("task", task, ignored_by_task(task, given), TASKS_USING, flags=flags, verbs=("reads", "reads"))


def _ignored(value: str, fields: Any, using: dict[str, tuple[str, ...]], unlisted: tuple[str, ...]) -> list[str]:
    """The ``fields`` that ``value`` (a method or a task) is not among the users of; a field
    ``using`` does not list is read by ``unlisted``."""
    given = set(fields)
    return [name for name in RunConfig.model_fields if name in given and value not in using.get(name, unlisted)]


def _refuse(kind: str, value: str, ignored: list[str], using: dict[str, tuple[str, ...]], *, flags: bool,
            verbs: tuple[str, str]) -> None:
    """One ConfigError for the first ignored field, naming who reads it (``verbs``: for one
    user, for several) and the --method or --task that would."""
    if not ignored:
        return
    name = ignored[0]
    shown = "--" + name.replace("_", "-") if flags else name
    users = using[name]
    raise ConfigError(
        f"{shown}: {kind} {value} ignores it (only {', '.join(users)} {verbs[len(users) > 1]} it); "
        f"drop {shown} or choose --{kind} {users[-1]}"
    )
