"""MLflow filter strings built from values that may be user text (search names, tags).

MLflow's filter grammar (``mlflow.utils.search_utils.SearchUtils``) takes a string value
between single or double quotes and strips the quotes without unescaping anything, while its
tokenizer (sqlparse) does treat ``''`` and backslashes as escapes. So a value holding both
kinds of quote, or a backslash, cannot be written so that MLflow reads it back unchanged; such a
value is refused. Every clause built here is parsed back with MLflow's own parser and refused
unless it reads as exactly the comparisons asked for: no value can change a filter's meaning.
"""

from __future__ import annotations

from typing import Mapping


class FilterValueError(ValueError):
    """A value cannot be put in an MLflow filter without changing the filter's meaning."""


def _quoted(value: str) -> str:
    if "\\" in value or any(ord(char) < 32 or ord(char) == 127 for char in value):
        raise FilterValueError(f"{value!r}: a backslash or control character cannot be matched in an MLflow filter")
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise FilterValueError(f"{value!r}: a value with both ' and \" cannot be matched in an MLflow filter")


def _key(key: str) -> str:
    if "`" in key or not key:
        raise FilterValueError(f"{key!r}: not a tag key an MLflow filter can name")
    return f"tags.`{key}`"


def tags_equal(tags: Mapping[str, str]) -> str:
    """``tags.`k` = 'v' and ...``: the runs whose tags equal every value of ``tags``, exactly."""
    if not tags:
        raise FilterValueError("a tag filter needs at least one tag")
    text = " and ".join(f"{_key(key)} = {_quoted(str(value))}" for key, value in tags.items())
    _check_meaning(text, {key: str(value) for key, value in tags.items()})
    return text


def tag_equals(key: str, value: str) -> str:
    """``tags.`key` = 'value'``, quoted and checked (see ``tags_equal``)."""
    return tags_equal({key: value})


def _check_meaning(text: str, tags: Mapping[str, str]) -> None:
    """Parse ``text`` as MLflow will and refuse it unless it is exactly these tag equalities."""
    from mlflow.exceptions import MlflowException
    from mlflow.utils.search_utils import SearchUtils

    try:
        parsed = SearchUtils.parse_search_filter(text)
    except MlflowException:
        parsed = None
    expected = [{"type": "tag", "key": key, "comparator": "=", "value": value} for key, value in tags.items()]
    if parsed != expected:
        shown = ", ".join(f"{key}={value!r}" for key, value in tags.items())
        raise FilterValueError(f"{shown}: cannot be written as an MLflow filter that matches exactly these values")
