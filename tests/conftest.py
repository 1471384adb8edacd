"""Session fixtures shared across the test tree."""

from __future__ import annotations

import os

import pytest

# One intra-op thread for torch in every process of the suite: the pytest workers' in-process
# runs and every CLI run they start (processes.cli_env passes this environment on, to the shared
# Ray head's trial workers too). `make test` runs two workers on two cores, each with servers,
# drivers and trial workers beside it: a second OpenMP thread per process finds no idle core and
# spins instead, so a tiny-model training costs 6 to 7 times the CPU (measured on 2 busy cores:
# 88-92 s against 14 s for a 3-epoch demo run). Read when torch loads: set before any test
# module imports it.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory):
    """One encoded-data cache for every CLI run in the session: synthetic data is tokenized once."""
    return tmp_path_factory.mktemp("metaxl-cache")


@pytest.fixture(scope="session")
def ray_head(shared_cache):
    """One local Ray head for the session, joined with ``--address`` by the searches of the
    modules that do not test Ray's own start-up, signals or faults (processes.RayHead). Those
    modules (tests/search/faults, tests/search/execution/test_cluster.py, the driver kill in
    tests/search/faults/test_driver_kill.py, tests/cli/test_best_interrupt.py) let each driver
    start its own local Ray, so that path stays covered; what follows their fault (a resume, a
    search through an MLflow outage) joins this head."""
    from processes import RayHead, cli_env

    head = RayHead(cli_env(shared_cache))
    yield head
    head.stop()


# Modules that run searches and trainings go first: `make test` hands whole modules to two
# workers in collection order (pytest-xdist --dist loadfile), and a long module handed out last
# would run on one core while the other sits idle. Within a directory, and within a module,
# the order stays as collected.
FIRST = ("search", "cli", "results", "train")


def pytest_collection_modifyitems(session, config, items):
    tests = session.config.rootpath / "tests"

    def place(item) -> int:
        parts = item.path.relative_to(tests).parts
        return FIRST.index(parts[0]) if len(parts) > 1 and parts[0] in FIRST else len(FIRST)

    items.sort(key=place)
