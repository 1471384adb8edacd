"""The ``metaxl-tune`` entry point: ``search``, ``ablate`` and ``best --rerun/--compare`` run their
Ray driver under a supervisor.

A Ray driver can be ended by Ray itself, with no Python run, when Ray's own processes get a
stop signal before it (metaxl_tune/common/supervision.py). The supervisor, this process, then
closes the search's (or ablation's) records with the driver's own closing (search/driver/supervised_ending.py),
removes the lock and says how to resume. It imports nothing heavy unless it has to close
something: every other command runs here directly.
"""

from __future__ import annotations

import os
import sys

SUPERVISED_COMMANDS = frozenset({"search", "ablate"})
RAY_FLAGS_OF_BEST = frozenset({"--rerun", "--compare"})
"""``best`` runs an ablation on Ray with either."""


def _command(argv: list[str]) -> str | None:
    """The subcommand (the root command takes no options of its own but --help and completion)."""
    return next((word for word in argv if not word.startswith("-")), None)


def supervised(argv: list[str]) -> bool:
    from metaxl_tune.common.supervision import SUPERVISOR_ENV

    command = _command(argv)
    drives_ray = command in SUPERVISED_COMMANDS or (command == "best" and bool(RAY_FLAGS_OF_BEST & set(argv)))
    return drives_ray and not {"--help", "-h"} & set(argv) and SUPERVISOR_ENV not in os.environ


def main() -> None:
    argv = sys.argv[1:]
    if supervised(argv):
        from metaxl_tune.common.supervision import supervise

        from metaxl_tune.search.driver.supervised_ending import SupervisedEnding

        sys.exit(supervise([sys.executable, "-m", "metaxl_tune.cli", *argv], SupervisedEnding()))
    from metaxl_tune.common.supervision import report_signals

    report_signals()
    from .app import main as run_app

    run_app()
