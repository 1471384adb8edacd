"""Optuna searcher that tells Optuna which trials the scheduler pruned.

Ray's OptunaSearch reports a trial stopped early by ASHA as COMPLETE (it has a result), so TPE
would treat a 1-epoch score as a finished one. Trials report ``epoch`` and ``epochs_total``:
one that ends without error before its last epoch is PRUNED, with its intermediate values
reported step by step as Optuna's pruning protocol expects. A trial that ended with a
``stop_reason`` (its loss diverged, or it ran out of memory) is FAIL, the reason kept as the
Optuna trial's ``stop_reason`` user attribute.

An interrupted search closes its RUNNING Optuna trials (ending.py); on ``--resume`` the restored
searcher opens a new Optuna trial for each Tune trial it still tracks whose Optuna trial was
closed that way, and the resumed Tune trial reports into it. Tune counts its own trials against
``num_samples``; the searcher only proposes when Tune asks (``suggest``), so the new Optuna
trials add no Tune trial.
"""

from __future__ import annotations

from typing import Any

from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from metaxl_tune.search.faults.ending import is_closed_as_interrupted, reopen_interrupted_trial
from metaxl_tune.train.outcome import STOP_REASON


def stopped_because(result: dict[str, Any] | None) -> str | None:
    """The reason a trial stopped itself (``diverged``, ``out_of_memory``), if it did."""
    return (result or {}).get(STOP_REASON)


def was_pruned(result: dict[str, Any] | None) -> bool:
    return (
        bool(result) and stopped_because(result) is None and "epochs_total" in result
        and result.get("epoch", 0) < result["epochs_total"]
    )


class PruningAwareOptunaSearch(OptunaSearch):
    """A resumed search may re-run a trial that Optuna already has as finished: the driver was
    killed after the trial ended but before Tune's last snapshot, so Tune continues it from its
    last checkpoint. Optuna keeps the state it recorded (the re-run reaches the same end); it
    is not updated twice."""

    def restore(self, checkpoint_path: str) -> None:
        """Tune's restore hook (``Tuner.restore`` on ``--resume``): the pickled state, then a new
        Optuna trial for each tracked, unfinished Tune trial whose Optuna trial the interrupted
        driver closed. Done here rather than on the trial's first result so that TPE's
        constant liar counts the resumed trials as running from the start."""
        super().restore(checkpoint_path)
        trials = self._ot_study.get_trials(deepcopy=False)
        for trial_id, ot_trial in list(self._ot_trials.items()):
            if trial_id not in self._completed_trials and is_closed_as_interrupted(trials[ot_trial.number]):
                self._ot_trials[trial_id] = reopen_interrupted_trial(self._ot_study, trials[ot_trial.number])

    def _finished_in_study(self, trial_id: str) -> bool:
        number = self._ot_trials[trial_id].number
        return self._ot_study.get_trials(deepcopy=False)[number].state.is_finished()

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        value = result.get(self.metric)
        if trial_id in self._ot_trials and value is not None and "epoch" in result and trial_id not in self._completed_trials:
            try:
                self._ot_trials[trial_id].report(value, step=int(result["epoch"]))
            except UpdateFinishedTrialError:
                self._completed_trials.add(trial_id)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        if trial_id in self._completed_trials or self._finished_in_study(trial_id):
            self._completed_trials.add(trial_id)
            return
        reason = stopped_because(result)
        if reason is not None and not error:
            self._ot_trials[trial_id].set_user_attr(STOP_REASON, reason)
            self._tell(trial_id, TrialState.FAIL)
            return
        if error or not was_pruned(result):
            super().on_trial_complete(trial_id, result=result, error=error)
            return
        self._tell(trial_id, TrialState.PRUNED)

    def _tell(self, trial_id: str, state: TrialState) -> None:
        try:
            self._ot_study.tell(self._ot_trials[trial_id], state=state)
        except RuntimeError as error:
            # The grid sampler's after_trial calls study.stop() once every point has been told,
            # which Optuna allows only inside study.optimize. Optuna stores the trial's state
            # before that (in a finally), so only the stop is lost, and Tune stops at
            # num_samples anyway; raised on, Tune would take it for the trial's own error and
            # run the trial again. (Ray's OptunaSearch logs any error of tell for the same reason.)
            if "Study.stop" not in str(error):
                raise
        self._completed_trials.add(trial_id)
