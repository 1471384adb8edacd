"""RacingSearch (search/space/racing_search.py) driven through Tune's searcher interface in this
process, as Tune drives it (no cluster): what each trial's config carries, how Optuna sees the
repeats, the state Tune snapshots, and a warm start's prior seeds."""

from __future__ import annotations

import json

import optuna
import pytest

from metaxl_tune.config.identity import config_id
from metaxl_tune.search.driver.warm_start import PriorTrial, seed_study
from metaxl_tune.search.space.racing import Race, paired_seed
from metaxl_tune.search.space.racing_search import RacingSearch, race_tags
from metaxl_tune.search.space.schema import SearchSpace
from metaxl_tune.search.space.strategy import build_sampler, build_searcher
from metaxl_tune.search.space.trial_configs import TrialConfigs
from metaxl_tune.config import RunConfig

SPACE = SearchSpace.from_dict({
    "metric": "best_dev_f1", "mode": "max", "fixed": {"method": "jt", "epochs": 2},
    "parameters": {"lr": {"type": "loguniform", "low": 1e-5, "high": 1e-2}},
})
DONE = {"epoch": 2, "epochs_total": 2}


def racing(race: Race | None = None, storage=None, name: str = "racing") -> RacingSearch:
    searcher = build_searcher(SPACE, build_sampler("tpe", 3, SPACE), study_name=name, storage=storage,
                              race=race or Race(), search_seed=11)
    assert isinstance(searcher, RacingSearch)
    return searcher


def test_a_trial_carries_its_seed_config_id_and_repeat_into_its_run_config_and_tags():
    searcher = racing()
    config = searcher.suggest("t0")
    identity = config_id({"lr": config["lr"]})
    assert (config["seed"], config["config_id"], config["repeat"]) == (paired_seed(11, 0), identity, 0)
    run = TrialConfigs(RunConfig(task="ner", target="tk", model="tiny", data="synthetic"), SPACE)(config)
    assert run.seed == paired_seed(11, 0) and run.lr == config["lr"]
    assert race_tags(config) == {"metaxl.config_id": identity, "metaxl.repeat": "0",
                                 "metaxl.seed": str(paired_seed(11, 0))}
    assert race_tags({"lr": 1e-3}) == {}  # a trial of a search from before seeds were tagged


def test_a_repeat_is_a_new_optuna_trial_of_the_same_point_told_its_own_value():
    searcher = racing()
    first = searcher.suggest("t0")
    searcher.on_trial_complete("t0", {"best_dev_f1": 50.0, **DONE})
    second = searcher.suggest("t1")
    searcher.on_trial_complete("t1", {"best_dev_f1": 40.0, **DONE})  # dropped: the incumbent's top-up next
    top_up = searcher.suggest("t2")
    assert (top_up["lr"], top_up["config_id"], top_up["repeat"], top_up["seed"]) == (
        first["lr"], first["config_id"], 1, paired_seed(11, 1))
    searcher.on_trial_complete("t2", {"best_dev_f1": 54.0, **DONE})
    trials = searcher.searcher._ot_study.trials
    assert [(t.params["lr"], t.value, t.user_attrs["repeat"]) for t in trials] == [
        (first["lr"], 50.0, 0), (second["lr"], 40.0, 0), (first["lr"], 54.0, 1)]
    assert searcher.race.summary()[first["config_id"]] == (52.0, 2)


def test_a_pruned_repeat_is_pruned_in_optuna_and_counts_in_no_mean():
    searcher = racing(Race(repeats=2))
    first = searcher.suggest("t0")
    assert searcher.suggest("t1")["repeat"] == 1  # offered at once: free slots run it in parallel
    searcher.on_trial_complete("t0", {"best_dev_f1": 50.0, **DONE})
    searcher.on_trial_complete("t1", {"best_dev_f1": 10.0, "epoch": 1, "epochs_total": 2})
    states = [t.state for t in searcher.searcher._ot_study.trials]
    assert states == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED]
    assert searcher.race.summary() == {first["config_id"]: (50.0, 1)}


def test_the_state_tune_snapshots_is_json_and_continues_the_race():
    searcher = racing()
    searcher.suggest("t0")
    searcher.on_trial_complete("t0", {"best_dev_f1": 50.0, **DONE})
    challenger = searcher.suggest("t1")
    searcher.on_trial_complete("t1", {"best_dev_f1": 60.0, **DONE})  # wins: paired seed 1 next
    state = json.loads(json.dumps(searcher.get_state()))
    restored = racing()
    restored.set_state(state)
    assert restored.race.state_dict() == searcher.race.state_dict()
    assert restored.trials == searcher.trials
    assert restored.race.next_repeat() == searcher.race.next_repeat()
    assert restored.race.next_repeat().repeat == 1 and challenger["repeat"] == 0


def test_a_warm_start_counts_a_prior_configs_seeds(tmp_path):
    prior_params = {"lr": 1e-3}
    identity = config_id(prior_params)
    priors = [PriorTrial(search="earlier", number=number, state=optuna.trial.TrialState.COMPLETE, params=prior_params,
                         value=value, intermediate_values={},
                         race={"config_id": identity, "repeat": number, "seed": paired_seed(11, number)})
              for number, value in enumerate([50.0, 52.0])]
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, study_name="warm", direction="maximize")
    seed_study(study, priors, SPACE, top=1)  # the prior config is the first trial to run
    searcher = racing(storage=storage, name="warm")
    config = searcher.suggest("t0")
    assert (config["config_id"], config["repeat"], config["seed"]) == (identity, 2, paired_seed(11, 2))
    searcher.on_trial_complete("t0", {"best_dev_f1": 54.0, **DONE})
    assert searcher.race.summary()[identity] == (pytest.approx(52.0), 3)
