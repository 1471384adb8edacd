"""An interrupted search closes its Optuna trials; the restored searcher opens new ones for the
trials that --resume continues (pruning.PruningAwareOptunaSearch.restore). In process: the
searcher is Tune's object itself, saved and restored through Tune's own hooks, without a cluster."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState
from ray import tune

from metaxl_tune.search.faults.ending import RESUMES_TRIAL, close_leftover_optuna_trials
from metaxl_tune.search.space.pruning import PruningAwareOptunaSearch
from metaxl_tune.search.driver.options import optuna_storage
from metaxl_tune.search.driver.runner import study_counts


def searcher(experiment_dir) -> PruningAwareOptunaSearch:
    return PruningAwareOptunaSearch(
        space={"meta_lr": tune.loguniform(1e-5, 1e-2), "r": tune.choice([1, 2, 4])},
        metric="best_dev_f1", mode="max", sampler=optuna.samplers.TPESampler(seed=0),
        study_name="s", storage=optuna_storage(experiment_dir),
    )


def result(epoch: int, score: float) -> dict:
    return {"best_dev_f1": score, "epoch": epoch, "epochs_total": 2}


def test_resume_reports_into_new_optuna_trials_with_the_interrupted_ones_params_and_values(tmp_path):
    first = searcher(tmp_path)
    configs = {trial_id: first.suggest(trial_id) for trial_id in ("a", "b", "c")}
    first.on_trial_result("a", result(1, 40.0))
    first.on_trial_complete("c", result(2, 50.0))
    first.save(str(tmp_path / "searcher.pkl"))
    # What the interrupted driver does once Tune's loop has stopped (runner.py).
    study = optuna.load_study(study_name="s", storage=optuna_storage(tmp_path))
    assert close_leftover_optuna_trials(study) == 2
    assert not study.get_trials(states=(TrialState.RUNNING,))

    resumed = searcher(tmp_path)
    resumed.restore(str(tmp_path / "searcher.pkl"))
    trials = optuna.load_study(study_name="s", storage=optuna_storage(tmp_path)).get_trials()
    assert len(trials) == 5
    reopened = {trial.user_attrs[RESUMES_TRIAL]: trial for trial in trials if RESUMES_TRIAL in trial.user_attrs}
    assert sorted(reopened) == [0, 1]  # a and b; c had finished
    for old_number, new in reopened.items():
        old = trials[old_number]
        assert new.state == TrialState.RUNNING and new.params == old.params
        assert new.distributions == old.distributions and new.intermediate_values == old.intermediate_values
    assert reopened[0].intermediate_values == {1: 40.0}

    resumed.on_trial_result("a", result(2, 45.0))
    resumed.on_trial_complete("a", result(2, 45.0))
    resumed.on_trial_complete("b", result(2, 30.0))
    study = optuna.load_study(study_name="s", storage=optuna_storage(tmp_path))
    trials = study.get_trials()
    assert [trials[reopened[n].number].state for n in (0, 1)] == [TrialState.COMPLETE] * 2
    assert trials[reopened[0].number].intermediate_values == {1: 40.0, 2: 45.0}
    assert [trials[reopened[n].number].params for n in (0, 1)] == [{"meta_lr": configs[t]["meta_lr"], "r": configs[t]["r"]}
                                                                   for t in ("a", "b")]
    # Three Tune trials, three counted Optuna trials: the interrupted ones are left out.
    assert close_leftover_optuna_trials(study) == 0
    assert study_counts(study) == {"completed": 3, "pruned": 0, "failed": 0}


def test_a_trial_that_finished_in_optuna_before_the_last_snapshot_is_not_reopened(tmp_path):
    first = searcher(tmp_path)
    first.suggest("a")
    first.save(str(tmp_path / "searcher.pkl"))
    # The trial ended after the snapshot the restored searcher comes from (a killed driver).
    first.on_trial_complete("a", result(2, 50.0))

    resumed = searcher(tmp_path)
    resumed.restore(str(tmp_path / "searcher.pkl"))
    study = optuna.load_study(study_name="s", storage=optuna_storage(tmp_path))
    assert [trial.state for trial in study.get_trials()] == [TrialState.COMPLETE]
