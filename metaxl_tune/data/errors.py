"""The one error type the data layer raises for bad or missing data."""

from __future__ import annotations


class DataError(ValueError):
    """Data cannot be read as asked.

    The message is one line: the file (and 1-based line number where there is one), what is
    wrong, and what to change, so a CLI can print it as is, without a traceback.
    """
