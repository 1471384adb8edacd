"""What a search's supervisor closes when its driver ended with the search's records open.

The same holds for an ablation (``ablate``, and the one ``best --rerun`` or ``--compare`` runs):
its trial runs left RUNNING become KILLED ``interrupted`` and its parent KILLED.

The driver ends that way when Ray ends it (its raylet got the job's SIGTERM first: Ray's core
worker then calls ``_Exit(1)``), or when it is killed outright (SIGKILL, the OOM killer). The
supervisor (common/supervision.py) then does what the driver does after a stop
(runner.close_search): Optuna trials still RUNNING become FAIL ``interrupted``, their MLflow
runs KILLED ``interrupted``, the parent run KILLED with the search's summary; it removes the
lock file the driver left, and says how to resume. The resume continues from Tune's last
periodic snapshot of the experiment, as after a killed driver.

Everything heavy is imported only here, when there is something to close: a supervisor whose
driver ended normally imports none of it.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any


class SupervisedEnding:
    """supervision.Ending for ``search`` and ``ablate`` (also the ablation that ``best --rerun``
    and ``--compare`` run)."""

    def close(self, opened: dict[str, Any]) -> None:
        from metaxl_tune.common.secrets import mask_standard_streams
        from metaxl_tune.search.driver.lock import release_left_lock

        # Lines printed from here on show no credential of the tracking URI (common/secrets.py).
        mask_standard_streams()
        try:
            if opened.get("command") == "ablate":
                _close_ablation(opened)
            else:
                _close_search(opened)
        finally:
            release_left_lock(opened["storage"], opened["name"], holder_pid=os.getpid())

    def say_stopped(self, opened: dict[str, Any], reason: str) -> None:
        from metaxl_tune.search.faults.interrupt import resume_hint

        command = "ablate" if opened.get("command") == "ablate" else "search"
        what = "ablation" if command == "ablate" else "search"
        hint = resume_hint(command, opened["name"], opened["storage"], tracking_uri=opened.get("tracking_uri"))
        print(f"{what} {opened['name']} interrupted ({reason}; its driver ended at once, and what it left open "
              f"is closed); its state is saved up to Tune's last snapshot. Resume with: {hint}", flush=True)


def _close_search(opened: dict[str, Any]) -> None:
    """What runner.close_search does after a stop: Optuna, then MLflow (with the search's summary)."""
    from metaxl_tune.results.tracking import Tracker
    from metaxl_tune.search.driver.options import SearchOptions, apply_preset
    from metaxl_tune.search.driver.preflight import resolve_space
    from metaxl_tune.search.driver.runner import close_search

    options = SearchOptions.load(opened["storage"], opened["name"])
    # The saved options hold the URI masked; the driver told the supervisor the one it used.
    options = apply_preset(dataclasses.replace(options, tracking_uri=opened.get("tracking_uri")))
    space, _ = resolve_space(options)
    tracker = Tracker(opened["resolved_tracking_uri"], options.name)
    parent_id = tracker.parent_run({}, reopen=False)
    close_search(options, space, tracker, parent_id, interrupted=True, started=time.monotonic(), log=print)


def _close_ablation(opened: dict[str, Any]) -> None:
    """What ablate.run_ablation does after a stop: its runs left RUNNING and its parent KILLED."""
    from metaxl_tune.results.tracking import Tracker
    from metaxl_tune.search.driver.ablate import AblationOptions
    from metaxl_tune.search.driver.runner import close_tracking

    options = AblationOptions.load(opened["storage"], opened["name"])
    options = dataclasses.replace(options, tracking_uri=opened.get("tracking_uri"))
    tracker = Tracker(opened["resolved_tracking_uri"], options.name)
    parent_id = tracker.parent_run({}, reopen=False)

    def finish_tracking() -> None:
        tracker.close_interrupted()
        tracker.end_run(parent_id, "KILLED")

    close_tracking(tracker, options, finish_tracking, print)
