"""The name rule (metaxl_tune/common/names.py) and the MLflow filter helper (metaxl_tune/results/mlflow_filters.py):
hostile names are refused by every command before Ray or MLflow start, no accepted name leaves
the runs folder, and no value changes what a filter matches in a real MLflow store."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from metaxl_tune.cli.app import app
from metaxl_tune.results.mlflow_filters import FilterValueError, tag_equals, tags_equal
from metaxl_tune.common.names import MAX_NAME_LENGTH, InvalidName, check_name, derived_name, name_problem

runner = CliRunner()

HOSTILE_NAMES = {
    "parent folder": "../x",
    "nested folder": "a/b",
    "empty": "",
    "newline": "ab\ncd",
    "101 characters": "n" * 101,
    "quote": "o'x",
}
# Every command that takes a user-given name, with what it needs to get as far as its name check.
COMMANDS = {
    "search": ["search", "--preset", "demo", "--name"],
    "best": ["best", "--name"],
    "report": ["report", "--name"],
    "ui": ["ui", "--name"],
    "ablate": ["ablate", "--preset", "demo", "--targets", "tk", "--name"],
    "sync": ["sync", "--name"],
    "analyze": ["analyze", "--run"],
}


@pytest.fixture
def nothing_may_start(monkeypatch, tmp_path):
    """Ray and MLflow clients that fail the test if anything starts them, in an empty runs folder."""
    import ray

    import metaxl_tune.results.tracking as tracking

    def forbidden(*args, **kwargs):
        raise AssertionError("started before the name was checked")

    monkeypatch.setattr(ray, "init", forbidden)
    monkeypatch.setattr(tracking, "MlflowClient", forbidden)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("METAXL_TUNE_RUNS", str(tmp_path / "runs"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    return tmp_path


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("label", HOSTILE_NAMES)
def test_a_hostile_name_is_refused_in_one_line_before_anything_starts(command, label, nothing_may_start):
    flag = COMMANDS[command][-1]
    result = runner.invoke(app, [*COMMANDS[command], HOSTILE_NAMES[label]])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith(f"error: {flag} "), result.output
    assert "letters, digits, '-', '_' and '.'" in lines[0]  # the line states the rule
    assert list(nothing_may_start.iterdir()) == []  # no runs folder, no store, no search folder


def test_a_default_ablation_name_from_a_study_file_follows_the_rule(nothing_may_start):
    study = nothing_may_start / "my study.yaml"
    study.write_text("settings: {a: {method: jt}}\n")
    result = runner.invoke(app, ["ablate", "--preset", "demo", "--targets", "tk", "--study", str(study)])
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"error: --name (default from --study {study}) 'my study-ner-"), result.output
    assert sorted(path.name for path in nothing_may_start.iterdir()) == ["my study.yaml"]


def test_derived_names_are_shortened_to_the_rule():
    name = derived_name("s" * MAX_NAME_LENGTH, "-rerun-20261206-010203")
    assert len(name) == MAX_NAME_LENGTH and name.endswith("-rerun-20261206-010203")


# ---- property: no accepted name leaves the runs folder ------------------------------------------

VALID = st.from_regex(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}", fullmatch=True)


@given(VALID)
def test_every_name_the_rule_describes_is_accepted(name):
    assert check_name(name) == name


@given(st.one_of(st.text(), st.text(alphabet=string.printable + "./\\\n\x00é", max_size=120)))
@example("..")
@example(".")
@example("/abs")
@example("a/../../b")
@example("x" * 101)
@example("nul\x00")
def test_no_accepted_name_escapes_the_runs_folder(text):
    runs = Path("/tmp/metaxl-names-runs").resolve()
    if name_problem(text) is not None:
        with pytest.raises(InvalidName):
            check_name(text)
        return
    folder = (runs / "metaxl-searches" / text).resolve()
    assert folder.parent == runs / "metaxl-searches" and folder.name == text
    assert 1 <= len(text) <= MAX_NAME_LENGTH and not text.startswith(".")


# ---- property: no value changes what a filter matches ---------------------------------------------

KEY = "metaxl.search"
DECOYS = ["plain", "o'x", 'o"x', "%", "_", "pl_in", "x' or '1' = '1", "plain' or tags.`metaxl.search` = 'o'x",
          "PLAIN", "plain ", " plain", "", "a''b", "a\\'b"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A real sqlite MLflow store holding runs tagged with look-alike and injection values."""
    directory = tmp_path_factory.mktemp("filters")
    client = MlflowClient(f"sqlite:///{directory / 'mlflow.db'}")
    experiment = client.create_experiment("filters", artifact_location=(directory / "artifacts").as_uri())
    for value in DECOYS:
        client.create_run(experiment, tags={KEY: value, "metaxl.role": "trial"})
    return client, experiment


def _matching(client, experiment, value: str) -> list[str]:
    runs = client.search_runs([experiment], filter_string=tag_equals(KEY, value), max_results=1000)
    return [run.data.tags[KEY] for run in runs]


@pytest.mark.parametrize("value", DECOYS)
def test_each_tagged_value_finds_exactly_its_own_runs(store, value):
    client, experiment = store
    try:
        found = _matching(client, experiment, value)
    except FilterValueError:
        assert "\\" in value or ("'" in value and '"' in value)  # the helper refuses only what cannot be written
        return
    assert found == [value]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.text(max_size=40), st.text(alphabet="'\"`\\ %_=andorAND()tags.", max_size=25)))
def test_no_value_changes_what_a_filter_matches(store, value):
    """A new run tagged with the value is the only extra match; refused values are exactly
    those MLflow's grammar cannot carry (a backslash, a control character, both quotes)."""
    client, experiment = store
    try:
        text = tag_equals(KEY, value)
    except FilterValueError:
        assert ("\\" in value or any(ord(c) < 32 or ord(c) == 127 for c in value)
                or ("'" in value and '"' in value))
        return
    before = _matching(client, experiment, value)
    assert before == [value] * DECOYS.count(value)
    run = client.create_run(experiment, tags={KEY: value, "metaxl.role": "probe"}).info.run_id
    try:
        runs = client.search_runs([experiment], filter_string=text, max_results=1000)
        assert sorted(r.data.tags[KEY] for r in runs) == [value] * (len(before) + 1)
        assert run in {r.info.run_id for r in runs}
        both = client.search_runs([experiment], filter_string=tags_equal({KEY: value, "metaxl.role": "probe"}))
        assert [r.info.run_id for r in both] == [run]
    finally:
        client.delete_run(run)
