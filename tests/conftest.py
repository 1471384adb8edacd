"""Session fixtures shared across the test tree."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory):
    """One encoded-data cache for every CLI run in the session: synthetic data is tokenized once."""
    return tmp_path_factory.mktemp("metaxl-cache")
