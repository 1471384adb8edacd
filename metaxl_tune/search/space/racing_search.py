"""The racing policy (racing.py) as a Ray Tune searcher around the Optuna searcher.

Each time Tune asks for a trial, :class:`RacingSearch` first asks the :class:`~racing.Race` for a
repeat; only when there is none does the Optuna sampler propose a config. Either way the trial
is a new trial with its own training seed, ``paired_seed(search_seed, repeat)``: a repeat is
trained again, never a cached value. The trial's config carries the seed (the RunConfig field
``seed``) and two race keys, ``config_id`` and ``repeat``, which TrialConfigs leaves out of the
RunConfig and :func:`race_tags` turns into the MLflow tags.

How the sampler sees repeats: each seed is its own Optuna trial of the same point. A repeat is
put into the study with ``enqueue_trial`` (its params fixed), asked for, and told its own value,
or PRUNED when ASHA stopped it. Optuna cannot change a finished trial's value, so "one
observation of the mean" would have to hold a config's trial open until its last seed, and a
pruned repeat could not be told at all; a trial per seed keeps every Optuna state true (each is
one training), keeps per-epoch values for the pruning protocol, works the same for every
sampler, and lets TPE's density put more weight where the evidence is more (README "When one
seed is not enough"). Every Optuna trial records ``config_id``, ``repeat`` and ``seed`` as user
attributes, which is how a warm start counts a prior config's seeds.

State: ``get_state``/``set_state`` (JSON-able) carry the race and which Tune trial is which
repeat; Tune saves them with its experiment snapshot (SearchGenerator walks the ``searcher``
attributes), so a ``--resume`` continues the race from the same snapshot as the trials: a
repeat started after the snapshot is asked for again, one the snapshot knew resumes as its
trial does.
"""

from __future__ import annotations

from typing import Any

from optuna.trial import TrialState
from ray.tune.search import Searcher

from metaxl_tune.config.identity import config_id
from metaxl_tune.search.space.pruning import stopped_because, was_pruned
from metaxl_tune.search.space.racing import CONFIG_ID_KEY, REPEAT_KEY, SEED_KEY, Race, paired_seed

WARM_START_FROM = "warm_start_from"
"""= warm_start.WARM_START_FROM (driver layer: not importable from here)."""


def race_tags(trial_config: dict[str, Any]) -> dict[str, str]:
    """The MLflow tags of a trial's seed, config and repeat (empty for a trial config without them:
    a search started before seeds were part of a trial)."""
    from metaxl_tune.results.tracking import CONFIG_ID_TAG, REPEAT_TAG, SEED_TAG

    if CONFIG_ID_KEY not in trial_config:
        return {}
    return {CONFIG_ID_TAG: str(trial_config[CONFIG_ID_KEY]), REPEAT_TAG: str(trial_config[REPEAT_KEY]),
            SEED_TAG: str(trial_config[SEED_KEY])}


class RacingSearch(Searcher):
    """Asks the race for a repeat, else the Optuna searcher for a new config (module docstring)."""

    def __init__(self, searcher: Any, race: Race, *, search_seed: int, searched: tuple[str, ...]):
        self.searcher = searcher
        self.race = race
        self.search_seed = search_seed
        self.searched = tuple(searched)
        self.trials: dict[str, tuple[str, int]] = {}
        """Tune trial id -> (config id, repeat)."""
        self._priors: dict[str, list[tuple[int, float | None]]] | None = None
        """A warm start's prior runs by config, read from the study at the first suggest (again
        after a resume: a config whose priors the race has already is not given them twice)."""
        super().__init__(metric=searcher.metric, mode=searcher.mode)

    # -- Tune's searcher interface ---------------------------------------------------------------

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec) -> bool:
        return self.searcher.set_search_properties(metric, mode, config, **spec)

    def suggest(self, trial_id: str) -> dict | None:
        study = self.searcher._ot_study
        self._read_priors(study)
        repeat = self.race.next_repeat()
        # Trials already waiting in the study (--warm-start-top) go first; the repeat is asked for
        # again next time, so it is never enqueued twice.
        if repeat is not None and not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            study.enqueue_trial(repeat.params, skip_if_exists=False)
        config = self.searcher.suggest(trial_id)
        if config is None or config == Searcher.FINISHED:
            return config
        searched = {name: config[name] for name in self.searched if name in config}
        identity = config_id(searched)
        self._add_priors_of(identity, searched)
        index = repeat.repeat if repeat is not None and repeat.config_id == identity else self.race.next_index(identity)
        self.race.started(identity, searched, index)
        self.trials[trial_id] = (identity, index)
        seed = paired_seed(self.search_seed, index)
        ot_trial = self.searcher._ot_trials[trial_id]
        for key, value in ((CONFIG_ID_KEY, identity), (REPEAT_KEY, index), (SEED_KEY, seed)):
            ot_trial.set_user_attr(key, value)
        return {**config, SEED_KEY: seed, CONFIG_ID_KEY: identity, REPEAT_KEY: index}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self.searcher.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self.searcher.on_trial_complete(trial_id, result=result, error=error)
        if trial_id not in self.trials:
            return
        identity, index = self.trials[trial_id]
        if (identity, index) not in self.race.running():
            # Its end is known already: an errored trial that a resumed search ran again.
            return
        value = None
        if not error and stopped_because(result) is None and not was_pruned(result):
            value = (result or {}).get(self.metric)
        self.race.finished(identity, index, None if value is None else float(value))

    def get_state(self) -> dict:
        return {"race": self.race.state_dict(), "trials": {k: list(v) for k, v in self.trials.items()},
                "search_seed": self.search_seed, "searched": list(self.searched)}

    def set_state(self, state: dict) -> None:
        self.race.load_state_dict(state["race"])
        self.trials = {trial_id: (entry[0], int(entry[1])) for trial_id, entry in state["trials"].items()}
        self.search_seed = int(state["search_seed"])
        self.searched = tuple(state["searched"])
        self._priors = None

    def save(self, checkpoint_path: str) -> None:
        self.searcher.save(checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        self.searcher.restore(checkpoint_path)

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        return self.searcher.set_max_concurrency(max_concurrent)

    # -- warm start ------------------------------------------------------------------------------

    def _read_priors(self, study: Any) -> None:
        """A warm start's prior trials (warm_start.py put them in the study), by config, once."""
        if self._priors is not None:
            return
        self._priors = {}
        for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
            if WARM_START_FROM not in trial.user_attrs:
                continue
            identity = config_id(dict(trial.params))
            runs = self._priors.setdefault(identity, [])
            # A prior from a search before seeds were part of a trial has no repeat: counted in order.
            repeat = int(trial.user_attrs.get(REPEAT_KEY, len(runs)))
            if all(repeat != seen for seen, _ in runs):
                runs.append((repeat, trial.value if trial.state == TrialState.COMPLETE else None))

    def _add_priors_of(self, identity: str, searched: dict) -> None:
        """A config the earlier searches ran counts their seeds once this search runs it (its next
        repeat is a new seed, and its mean includes theirs)."""
        runs = (self._priors or {}).pop(identity, None)
        if not runs or self.race.next_index(identity) != 0:
            return
        for repeat, value in sorted(runs):
            self.race.started(identity, searched, repeat)
            self.race.finished(identity, repeat, value)
