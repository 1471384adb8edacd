"""How a search or ablation ends: over, interrupted, or over with every trial failed.

A search is *over* when Tune's loop ran to its end (every trial ended, or the time budget ran
out); it is *interrupted* when a signal stopped it (Ctrl-C, SIGTERM). Either way nothing is
left RUNNING once the driver exits: Optuna trials still RUNNING become FAIL with the stop reason
``interrupted``, and their MLflow runs KILLED with the outcome ``interrupted``. Those of an
over search were proposed just before a killed driver's last snapshot, so the restored search
never ran them. Those of an interrupted search belong to trials that ``--resume`` continues:
the restored searcher opens a new Optuna trial for each (same params and distributions, the
old trial's intermediate values, user attribute ``resumes_trial`` = the old trial's number,
``reopen_interrupted_trial``), and the resumed trial reports into it; its MLflow run is
reopened (the same run, found again by its tags). Trials closed as ``interrupted`` are left out
of the search's counts, so a search of N samples still shows N trials.

A search whose trials all failed says why: the most common failure reason and its count, from
Tune's records (a stop reason such as ``diverged``, or the last line of the error) or, for
``best``, from the trial runs' tags in MLflow.
"""

from __future__ import annotations

import collections
import re
from dataclasses import dataclass
from typing import Any, Iterable

from metaxl_tune.results.tracking import INTERRUPTED

ERROR_TAG = "metaxl.error"
"""MLflow tag of a trial that ended with an error: the error's last line."""
FAILED_OUTCOMES = ("failed", "diverged", "out_of_memory")
FINISHED_OUTCOMES = ("completed", "pruned")
_ERROR_LINE = re.compile(r"^\s*(?:[\w.]+\.)?(\w*(?:Error|Exception|Interrupt|Exit)\w*)(?::\s*(.*))?$")


def error_reason(text: str) -> str:
    """The last ``SomeError: message`` line of a traceback (Tune's error text), shortened."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    for line in reversed(lines):
        match = _ERROR_LINE.match(line)
        if match:
            name, message = match.group(1), (match.group(2) or "").strip()
            return f"{name}: {message}"[:200] if message else name
    return (lines[-1] if lines else "error")[:200]


@dataclass(frozen=True)
class Failures:
    total: int
    """Trials that ended (finished or failed)."""
    failed: int
    reason: str | None
    """The most common failure reason."""
    reason_count: int

    @property
    def all_failed(self) -> bool:
        return self.total > 0 and self.failed == self.total

    def line(self, what: str = "trials") -> str:
        return (f"all {self.total} {what} failed; most common reason: {self.reason} "
                f"({self.reason_count} of {self.failed})")


def count_failures(reasons: Iterable[str | None]) -> Failures:
    """``reasons``: one per ended trial, None for one that finished (completed or pruned)."""
    reasons = list(reasons)
    failed = [reason for reason in reasons if reason is not None]
    common = collections.Counter(failed).most_common(1)
    reason, count = common[0] if common else (None, 0)
    return Failures(len(reasons), len(failed), reason, count)


def result_reason(result: Any) -> str | None:
    """Failure reason of one entry of Tune's ResultGrid, None when the trial finished."""
    metrics = result.metrics or {}
    if metrics.get("stop_reason"):
        return str(metrics["stop_reason"])
    if result.error is not None:
        return error_reason(str(result.error))
    return None


def tune_failures(results: Any) -> Failures:
    """Failures of a ResultGrid (every trial of the experiment, restored ones included)."""
    return count_failures(result_reason(result) for result in results)


def run_reason(run: Any) -> str | None:
    """Failure reason of a trial's MLflow run, None when it finished or has not ended."""
    if run.info.status in ("RUNNING", "SCHEDULED"):
        return None
    outcome = run.data.tags.get("metaxl.outcome", "")
    if outcome in ("diverged", "out_of_memory"):
        return outcome
    if outcome == "failed" or run.info.status == "FAILED":
        return run.data.tags.get(ERROR_TAG, "error")
    return None


def finished_runs(runs: list) -> list:
    return [run for run in runs if run.data.tags.get("metaxl.outcome") in FINISHED_OUTCOMES]


def no_trial_finished(runs: list, name: str) -> str | None:
    """``best``'s line when every trial of the search failed, None otherwise (trials that are
    running or were interrupted are ranked by what they logged so far)."""
    if not runs or finished_runs(runs):
        return None
    reasons = [run_reason(run) for run in runs]
    if any(reason is None for reason in reasons):
        return None
    failures = count_failures(reasons)
    return (f"no trial of {name} finished: all {failures.failed} failed; most common reason: {failures.reason} "
            f"({failures.reason_count} of {failures.failed})")


def check_some_trial_finished(tracker: Any) -> None:
    """Raise ``ResultsError`` (a one-line message) when every trial of the search failed."""
    from metaxl_tune.results.ranking import ResultsError

    if tracker.client.get_experiment_by_name(tracker.experiment) is None:
        return
    message = no_trial_finished(tracker.trial_runs(), tracker.search_name)
    if message is not None:
        raise ResultsError(message)


RESUMES_TRIAL = "resumes_trial"
"""User attribute of an Optuna trial opened on ``--resume``: the number of the interrupted trial it continues."""


def close_leftover_optuna_trials(study: Any) -> int:
    """FAIL (stop reason ``interrupted``) for Optuna trials still RUNNING once a search is over or
    interrupted."""
    from optuna.trial import TrialState

    closed = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study._storage.set_trial_user_attr(trial._trial_id, "stop_reason", INTERRUPTED)
        study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
        closed += 1
    return closed


def is_closed_as_interrupted(trial: Any) -> bool:
    """An Optuna trial that ``close_leftover_optuna_trials`` ended (FrozenTrial)."""
    from optuna.trial import TrialState

    return trial.state == TrialState.FAIL and trial.user_attrs.get("stop_reason") == INTERRUPTED


def reopen_interrupted_trial(study: Any, old: Any) -> Any:
    """A new RUNNING Optuna trial (returned as an ``optuna.Trial``) that continues ``old``, a
    FrozenTrial closed as interrupted: the same params and distributions, its intermediate
    values, its user attributes (a racing search's config id, repeat and seed) but the stop
    reason, and ``resumes_trial`` = ``old.number``. Optuna cannot reopen a finished trial; an
    enqueued trial is the public way to give a new one fixed params (the driver is the study's
    only writer and enqueues nothing else, so ``ask`` takes this one)."""
    kept = {key: value for key, value in old.user_attrs.items() if key != "stop_reason"}
    study.enqueue_trial(old.params, user_attrs={**kept, RESUMES_TRIAL: old.number})
    trial = study.ask(fixed_distributions=old.distributions)
    for step, value in sorted(old.intermediate_values.items()):
        trial.report(value, step)
    return trial
