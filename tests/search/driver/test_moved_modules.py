"""Searches started before the modules moved (issue #24) still resume.

The alias table (metaxl_tune/search/driver/moved_modules.py) against every module and class of
711d83e, the last release before the move; and a real search folder that release made and
interrupted (tests/fixtures/before_move), resumed by today's CLI.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import pickle
import shutil
import sqlite3
import sys
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

import metaxl_tune.results
from metaxl_tune.results.mlflow_filters import tags_equal
from metaxl_tune.search.driver.moved_modules import (
    MOVED_MODULES, MOVED_NAMES, MovedModuleError, old_module_paths, resolve,
)
from metaxl_tune.search.driver.options import optuna_storage
from metaxl_tune.search.driver.sync import trial_states
from metaxl_tune.search.space.pruning import PruningAwareOptunaSearch
from processes import run_cli

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "before_move"
ORIGIN = json.loads((FIXTURE / "origin.json").read_text())
NAME = ORIGIN["name"]
OLD_NAMES: dict[str, dict[str, list[str]]] = json.loads((FIXTURE / "old_names.json").read_text())
"""Every module of 711d83e's metaxl_tune -> its "classes" and "functions" (those it defined)."""
EXPERIMENT = FIXTURE / ORIGIN["folder"] / "metaxl-searches" / NAME


def test_every_module_of_the_old_release_exists_or_is_in_the_table():
    gone = [module for module in OLD_NAMES if importlib.util.find_spec(module) is None]
    assert [module for module in gone if module not in MOVED_MODULES] == []


def test_the_table_names_old_modules_and_modules_that_exist():
    assert set(MOVED_MODULES) <= set(OLD_NAMES)
    for (old, name), new in MOVED_NAMES.items():
        assert old in OLD_NAMES and name in OLD_NAMES[old]["classes"] + OLD_NAMES[old]["functions"]
        assert getattr(importlib.import_module(new), name).__module__ == new
    for new in MOVED_MODULES.values():
        importlib.import_module(new)


# Driver-side helpers (and one class) of the old release that later changes removed or renamed. None is handed
# to Tune or held by a pickled object (the driver calls them), so no old state names them.
GONE_BY_DESIGN = {
    ("metaxl_tune.search.callbacks", "trial_error"),  # folded into the callbacks' on_trial_error
    ("metaxl_tune.search.runner", "attach_plots"),  # split into draw_plots and upload_plots (records/plots.py)
    ("metaxl_tune.search.sync", "trial_statuses"),  # now trial_states, which also counts failures
    # Read inside a trial, never by the driver, so never in Tune's state: the readers of whole
    # files became streams that hold what is asked (#26, data/streams.py).
    ("metaxl_tune.data.panx", "read_panx_file"),  # now panx_scan.PanxStream
    ("metaxl_tune.data.panx", "read_panx_splits"),  # now panx_scan.read_panx_splits, of streams
    ("metaxl_tune.data.tables", "dataset_to_examples"),  # now tables.table_stream
    # `best` ranks configs, not trials (#25): results/config_ranking.py and config_view.py. Only
    # `best` built these rows, so no saved state holds one.
    ("metaxl_tune.results", "TrialRow"),
    ("metaxl_tune.results", "ranked_trials"),
    ("metaxl_tune.results", "best_columns"),
    ("metaxl_tune.results", "best_table"),
}


def test_every_class_and_public_function_of_the_old_release_resolves_by_its_old_path():
    """As a pickle looks them up: import the old module, then take the name from it. Classes
    are what the state pickles instances of; public functions are handed to Tune as callables."""
    unresolved = []
    with old_module_paths():
        for module, defined in OLD_NAMES.items():
            for name in [*(c for c in defined["classes"] if (module, c) not in GONE_BY_DESIGN),
                         *(f for f in defined["functions"] if not f.startswith("_") and (module, f) not in GONE_BY_DESIGN)]:
                try:
                    found = getattr(importlib.import_module(module), name)
                except (ImportError, AttributeError) as error:
                    unresolved.append(f"{module}.{name}: {error}")
                    continue
                if getattr(found, "__name__", None) != name:
                    unresolved.append(f"{module}.{name}: resolves to {found!r}")
    assert unresolved == []


def test_the_old_releases_pickled_state_loads_only_inside_the_context():
    tuner_state = (EXPERIMENT / "tuner.pkl").read_bytes()
    with pytest.raises(ModuleNotFoundError, match=r"metaxl_tune\.search\."):
        pickle.loads(tuner_state)
    with old_module_paths():
        state = pickle.loads(tuner_state)
        searcher_state = pickle.loads(next(EXPERIMENT.glob("searcher-state-*.pkl")).read_bytes())
    searcher = state["_tune_config"].search_alg
    assert type(searcher) is PruningAwareOptunaSearch
    assert [type(c).__module__ for c in state["_run_config"].callbacks] == [
        "metaxl_tune.search.records.callbacks", "metaxl_tune.search.records.callbacks",
        "metaxl_tune.search.faults.persistence"]
    # The define-by-run space: a bound method of the SearchSpace the old release pickled.
    assert type(searcher_state["_space"].__self__).__module__ == "metaxl_tune.search.space.schema"


def test_an_unknown_old_module_fails_naming_it_and_the_table():
    # A protocol-0 pickle of metaxl_tune.search.gone.Thing: a module neither real nor moved.
    with old_module_paths(), pytest.raises(ModuleNotFoundError) as raised:
        pickle.loads(b"cmetaxl_tune.search.gone\nThing\n.")
    assert isinstance(raised.value, MovedModuleError)
    assert raised.value.name == "metaxl_tune.search.gone"
    message = str(raised.value)
    assert message.startswith("metaxl_tune.search.gone: ") and "metaxl_tune.search.driver.moved_modules" in message
    with pytest.raises(MovedModuleError, match="^metaxl_tune.gone: "):
        resolve("metaxl_tune.gone", "Thing")


def test_a_name_gone_from_a_moved_module_fails_naming_where_it_was_looked_for():
    with pytest.raises(AttributeError, match=r"^metaxl_tune\.tracking\.Gone: not in metaxl_tune\.results\.tracking"):
        resolve("metaxl_tune.tracking", "Gone")


def test_old_paths_are_gone_once_the_context_closes():
    with old_module_paths():
        assert importlib.import_module("metaxl_tune.search.runner").SearchOptions.__module__ == (
            "metaxl_tune.search.driver.options")
        assert metaxl_tune.results.ResultsError.__module__ == "metaxl_tune.results.ranking"
    assert "metaxl_tune.search.runner" not in sys.modules
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("metaxl_tune.search.runner")
    assert "__getattr__" not in vars(metaxl_tune.results)
    assert not hasattr(metaxl_tune.results, "ResultsError")


def relocated_fixture(tmp_path: Path) -> Path:
    """The fixture copied under ``tmp_path``, at a path as long as the one it was made at, with
    every occurrence of that path rewritten (README.md in the fixture says why). Same-length
    bytes keep the pickles' and Tune's hex-encoded pickles' string lengths valid; MLflow's store
    is rewritten with SQL, as a user moving a sqlite store would."""
    old = ORIGIN["root"]
    pad = len(old) - len(str(tmp_path)) - 1
    assert pad > 0, f"the test's folder {tmp_path} is longer than the fixture's root; lengthen root in origin.json"
    root = tmp_path / ("r" * pad)
    shutil.copytree(FIXTURE / ORIGIN["folder"], root)
    new = str(root)
    forms = [(old.encode(), new.encode()), (old.encode().hex().encode(), new.encode().hex().encode())]
    for path in root.rglob("*"):
        if path.is_file() and path.name != "mlflow.db":
            data = path.read_bytes()
            for before, after in forms:
                data = data.replace(before, after)
            path.write_bytes(data)
            assert not any(before in data for before, _ in forms), path
    with sqlite3.connect(root / "mlflow.db") as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for column in [row[1] for row in db.execute(f'PRAGMA table_info("{table}")')]:
                db.execute(f'UPDATE "{table}" SET "{column}" = replace("{column}", ?, ?) '
                           f'WHERE typeof("{column}") = \'text\' AND instr("{column}", ?) > 0', (old, new, old))
    return root


def test_a_search_interrupted_by_the_old_release_resumes_to_its_end(tmp_path, shared_cache, ray_head):
    root = relocated_fixture(tmp_path)
    experiment = root / "metaxl-searches" / NAME
    study_before = optuna.load_study(study_name=NAME, storage=optuna_storage(experiment))
    ended_before = {t.number: t.value for t in study_before.trials if t.state == optuna.trial.TrialState.COMPLETE}
    statuses_before = {trial: status for trial, (status, _) in trial_states(experiment).items()}
    assert ended_before and set(statuses_before.values()) - {"TERMINATED"}  # something was left to resume

    result = run_cli(["search", "--resume", "--name", NAME, "--storage", str(root / "metaxl-searches")],
                     cwd=root, cache_dir=shared_cache, ray=ray_head)
    assert result.returncode == 0, result.stdout + result.stderr

    # Tune ran every trial to its end: the restored ones and the rest, three in all.
    statuses = {trial: status for trial, (status, _) in trial_states(experiment).items()}
    assert set(statuses_before) <= set(statuses) and len(statuses) == 3
    assert set(statuses.values()) == {"TERMINATED"}
    # Optuna: three trials ran (the interrupted one's first Optuna trial stays closed as
    # interrupted), the ones finished before kept as they were, nothing RUNNING.
    study = optuna.load_study(study_name=NAME, storage=optuna_storage(experiment))
    ran = [t for t in study.trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]
    assert len(ran) == 3
    assert {t.number: t.value for t in study.trials if t.number in ended_before} == ended_before
    assert all(t.state != optuna.trial.TrialState.RUNNING for t in study.trials)
    # MLflow: the search's parent run and its three trial runs, all ended.
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("metaxl-tune").experiment_id],
                              filter_string=tags_equal({"metaxl.search": NAME}), max_results=100)
    parents = [run for run in runs if run.data.tags.get("metaxl.role") == "search"]
    trials = [run for run in runs if run.data.tags.get("metaxl.role") == "trial"
              and run.data.tags.get("metaxl.outcome") != "interrupted"]
    assert [run.info.status for run in parents] == ["FINISHED"]
    assert len(trials) == 3 and {run.info.status for run in trials} == {"FINISHED"}
    assert {run.data.tags["metaxl.trial_id"] for run in trials} == set(statuses)
