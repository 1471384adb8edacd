"""Ranking configs, not trials: a seed-aware search (and one from before the seed tags) read back
from a real sqlite MLflow store (seeded_store.py says what it holds)."""

from __future__ import annotations

import json

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from metaxl_tune.config.identity import config_id
from metaxl_tune.results.config_artifact import CSV_FILE, TABLE_FILE, upload_config_table
from metaxl_tune.results.config_ranking import ranked_configs
from metaxl_tune.results.config_view import best_table
from metaxl_tune.results.optimism import gap_table, optimism_gap
from metaxl_tune.results.ranking import ResultsError
from metaxl_tune.results.tracking import Tracker
from seeded_store import NAME, build_seeded_store, parent_run_id, searched_values


@pytest.fixture(scope="module")
def tagged(tmp_path_factory) -> str:
    return build_seeded_store(tmp_path_factory.mktemp("tagged"))


@pytest.fixture(scope="module")
def untagged(tmp_path_factory) -> str:
    return build_seeded_store(tmp_path_factory.mktemp("untagged"), tagged=False)


def stored(uri: str, run_id: str) -> list:
    return MlflowClient(uri).list_artifacts(run_id)


def test_one_row_per_config_with_its_completed_trials_as_seeds(tagged):
    ranked = ranked_configs(Tracker(tagged, NAME), "best_dev_f1")
    assert [row.config_id for row in ranked.rows] == [config_id(searched_values(name)) for name in "ABCD"]
    assert [row.seed_values for row in ranked.rows] == [("11", "12", "13"), ("11", "12", "13"), ("11", "12"), ("11",)]
    # C's pruned seed 13 (40.0), D's failed seed and E's interrupted trial are no seeds.
    assert [row.trial_ids for row in ranked.rows] == [
        ("ab12c_00000", "ab12c_00005", "ab12c_00009"), ("ab12c_00001", "ab12c_00006", "ab12c_00010"),
        ("ab12c_00002", "ab12c_00007"), ("ab12c_00003",)]
    assert dict(ranked.outcomes) == {"completed": 9, "pruned": 1, "failed": 1, "interrupted": 1}


def test_configs_with_the_most_seeds_rank_by_mean_and_fewer_seeds_rank_below(tagged):
    ranked = ranked_configs(Tracker(tagged, NAME), "best_dev_f1")
    # B holds the best completed trial (35.0) and C the best mean (33.25): A wins on 3 seeds.
    assert [(row.seeds, row.mean) for row in ranked.rows] == [(3, 32.0), (3, 31.0), (2, 33.25), (1, 36.0)]
    assert [row.stderr for row in ranked.rows] == [pytest.approx(2 / 3 ** 0.5), pytest.approx(2.0),
                                                   pytest.approx(0.25), None]
    assert [row.mean_of("best_test_f1") for row in ranked.rows] == [33.0, 32.0, 34.25, 37.0]
    assert ranked.incumbent is ranked.rows[0]


def test_a_lower_is_better_metric_ranks_lowest_first_within_each_seed_count(tagged):
    ranked = ranked_configs(Tracker(tagged, NAME), "device_seconds")  # "seconds": lower is better
    assert [row.seeds for row in ranked.rows] == [3, 3, 2, 1]
    assert "lowest first" in ranked.rule()


def test_the_table_marks_one_seed_configs_and_fits_80_columns(tagged):
    text = best_table(ranked_configs(Tracker(tagged, NAME), "best_dev_f1"), 5, width=80)
    assert text == (
        "            best_dev_f1   test  meta_  rtn_\n"
        "#   seeds     mean ± se     F1  lr     bottleneck\n"
        "-  ------  ------------  -----  -----  ----------\n"
        "1       3  32.00 ± 1.15  33.00  1e-4   8\n"
        "2       3  31.00 ± 2.00  32.00  3e-4   16\n"
        "3       2  33.25 ± 0.25  34.25  1e-3   8\n"
        "4  1 seed         36.00  37.00  2e-3   32\n"
        "\n"
        "config ids and the trials behind each row (their seeds):\n"
        f"1  {config_id(searched_values('A'))}  trials 00000 (seed 11), 00005 (seed 12), 00009 (seed 13)\n"
        f"2  {config_id(searched_values('B'))}  trials 00001 (seed 11), 00006 (seed 12), 00010 (seed 13)\n"
        f"3  {config_id(searched_values('C'))}  trials 00002 (seed 11), 00007 (seed 12)\n"
        f"4  {config_id(searched_values('D'))}  trials 00003 (seed 11)\n"
        "Ranked by mean best_dev_f1 (highest first) among the configs with the most seeds\n"
        "(3), then those with fewer, each seed count ranked among itself. ± is the\n"
        "standard error of the mean over seeds (completed trials only); a 1-seed score is\n"
        "one training, not a mean.\n"
    )


def test_a_search_from_before_the_seed_tags_ranks_the_same_configs(tagged, untagged):
    old = ranked_configs(Tracker(untagged, NAME), "best_dev_f1")
    new = ranked_configs(Tracker(tagged, NAME), "best_dev_f1")
    # Grouped by the recorded searched values (MLflow params): trials of equal values are one config.
    assert [row.config_id for row in old.rows] == [
        config_id({key: str(value) for key, value in searched_values(name).items()}) for name in "ABCD"]
    assert [(row.seed_values, row.trial_ids, row.mean) for row in old.rows] == [
        (row.seed_values, row.trial_ids, row.mean) for row in new.rows]


def test_a_search_without_a_completed_trial_has_no_config_to_rank(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("metaxl-tune", artifact_location=(tmp_path / "a").as_uri())
    run = client.create_run(experiment, tags={"metaxl.search": "p", "metaxl.role": "trial",
                                              "metaxl.trial_id": "t0", "metaxl.outcome": "pruned"}).info.run_id
    client.log_metric(run, "best_dev_f1", 50.0)
    with pytest.raises(ResultsError, match=r"^search p has no completed trial \(1 pruned\)"):
        ranked_configs(Tracker(uri, "p"), "best_dev_f1")


def stores_it(what: str, size: int, action) -> bool:
    action()
    return True


def load_table(uri: str, parent: str):
    """The table as the MLflow UI's table view reads it (``load_table`` finds the runs that tag it
    as a table with MLflow's fluent search, which reads the global tracking URI)."""
    client = MlflowClient(uri)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        return client.load_table(client.get_run(parent).info.experiment_id, TABLE_FILE, run_ids=[parent])
    finally:
        mlflow.set_tracking_uri(previous)


def test_the_parent_run_holds_the_per_config_table_once(tmp_path):
    uri = build_seeded_store(tmp_path)
    tracker, parent = Tracker(uri, NAME), parent_run_id(uri)
    assert upload_config_table(tracker, parent, "best_dev_f1", stores_it) == 2
    table = load_table(uri, parent)
    assert list(table["config_id"]) == [config_id(searched_values(name)) for name in "ABCD"]
    assert list(table["seeds"]) == [3, 3, 2, 1]
    assert list(table["mean best_dev_f1"]) == [32.0, 31.0, 33.25, 36.0]
    assert list(table["seed_list"]) == ["11 12 13", "11 12 13", "11 12", "11"]
    assert list(table["trial_ids"])[2] == "ab12c_00002 ab12c_00007"
    assert list(table["rtn_bottleneck"]) == [8, 16, 8, 32]  # pandas reads the recorded "8" as a number
    run = MlflowClient(uri).get_run(parent)
    assert json.loads(run.data.tags["mlflow.loggedArtifacts"]) == [{"path": TABLE_FILE, "type": "table"}]
    csv_path = MlflowClient(uri).download_artifacts(parent, CSV_FILE, str(tmp_path))
    lines = open(csv_path, encoding="utf-8").read().splitlines()
    assert lines[0] == ("rank,config_id,seeds,mean best_dev_f1,stderr best_dev_f1,mean best_test_f1,seed_list,"
                        "trial_ids,meta_lr,rtn_bottleneck")
    assert lines[4] == f"4,{config_id(searched_values('D'))},1,36.0,,37.0,11,ab12c_00003,0.002,32"
    # Closed again (a resume) or synced: the same table is not written twice, nor appended to.
    assert upload_config_table(tracker, parent, "best_dev_f1", stores_it) == 0
    assert len(load_table(uri, parent)) == 4
    assert MlflowClient(uri).get_run(parent).data.tags == run.data.tags


def test_a_store_that_refuses_the_table_leaves_the_parent_run_marked_and_no_file(tmp_path):
    uri = build_seeded_store(tmp_path)
    tracker, parent = Tracker(uri, NAME), parent_run_id(uri)
    asked = []
    assert upload_config_table(tracker, parent, "best_dev_f1", lambda what, size, action: asked.append(what)) == 0
    assert asked == ["the search's per-config table"]
    assert not [item for item in stored(uri, parent) if item.path in (TABLE_FILE, CSV_FILE)]
    # The tag is the record: the same whether or not the files made it (sync uploads them later).
    assert "mlflow.loggedArtifacts" in MlflowClient(uri).get_run(parent).data.tags


def test_the_optimism_gap_is_the_fresh_seed_mean_minus_the_searchs_mean(tagged):
    incumbent = ranked_configs(Tracker(tagged, NAME), "best_dev_f1").incumbent  # A: 32.00 over seeds 11-13
    gap = optimism_gap(incumbent, "best_dev_f1", {"2": 31.0, "1": 29.0, "12": 32.0})
    assert gap.fresh == (29.0, 31.0) and gap.reused == ("12",)
    assert gap.gap == pytest.approx(-2.0)
    assert gap.line() == ("optimism gap of best_dev_f1: -2.00 = fresh-seed mean 30.00 (2 seeds) - the search's mean "
                          "32.00 (3 seeds); seed 12 left out: the search trained it already")
    test = optimism_gap(incumbent, "best_test_f1", {"1": 34.5})
    assert test.gap == pytest.approx(1.5)


def test_no_fresh_seed_means_no_gap_and_says_what_to_do(tagged):
    incumbent = ranked_configs(Tracker(tagged, NAME), "best_dev_f1").incumbent
    gap = optimism_gap(incumbent, "best_dev_f1", {"11": 30.0})
    assert gap.gap is None
    assert gap.line().endswith("seed 11 left out: the search trained it already); re-run with a larger --seeds")
    assert optimism_gap(incumbent, "not_logged", {"1": 1.0}) is None


def test_the_rerun_gap_table_has_a_row_per_config(tagged):
    rows = ranked_configs(Tracker(tagged, NAME), "best_dev_f1").rows
    gaps = [optimism_gap(rows[0], "best_dev_f1", {"1": 30.0, "2": 31.0}), optimism_gap(rows[3], "best_dev_f1", {"1": 30.0})]
    assert gap_table(gaps, width=80) == (
        "              search         fresh  fresh\n"
        "config          mean  seeds   mean  seeds    gap\n"
        "------------  ------  -----  -----  -----  -----\n"
        f"{rows[0].config_id}   32.00      3  30.50      2  -1.50\n"
        f"{rows[3].config_id}   36.00      1  30.00      1  -6.00\n"
    )
