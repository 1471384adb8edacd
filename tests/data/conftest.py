"""Fixtures for the data tests: writing data files and capturing one-line DataErrors."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from metaxl_tune.config import RunConfig
from metaxl_tune.data import DataError, load_splits


@pytest.fixture
def write() -> Callable[[Path, str], Path]:
    def write_file(path: Path, text: str) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    return write_file


@pytest.fixture
def load_error() -> Callable[..., str]:
    """Runs load_splits expecting a DataError; returns its message after checking it is one line."""

    def load(config: RunConfig, language: str) -> str:
        with pytest.raises(DataError) as excinfo:
            load_splits(config, language)
        message = str(excinfo.value)
        assert "\n" not in message
        return message

    return load
