"""Tracking URIs that need no server: the PostgreSQL driver, the resume line of a URI with
credentials, and the extra that installs what SQLAlchemy picks (results/tracking_uri.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from metaxl_tune.cli.app import app
from metaxl_tune.results.tracking_uri import resume_credentials
from metaxl_tune.search.faults.interrupt import resume_hint

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

SECRET = "S3CRETpw"
CREDENTIAL_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")


@pytest.fixture
def no_credentials(monkeypatch):
    for variable in CREDENTIAL_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    return monkeypatch


def test_postgresql_without_its_driver_is_one_line_naming_the_extra(no_credentials):
    # None in sys.modules is Python's own way of making an import fail, as on a machine without it.
    for module in ("psycopg", "psycopg2"):
        no_credentials.setitem(sys.modules, module, None)

    result = CliRunner().invoke(app, ["best", "--name", "nope", "--tracking-uri",
                                      f"postgresql://mlflow:{SECRET}@127.0.0.1:9/mlflow"])

    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert "postgresql://mlflow:***@127.0.0.1:9/mlflow: the PostgreSQL driver (psycopg) is not installed" in result.output
    assert "pip install 'metaxl-tune[postgres]'" in result.output and SECRET not in result.output


def test_the_postgres_extra_installs_the_driver_sqlalchemy_picks():
    from sqlalchemy.engine import make_url

    extra = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    requirements = extra["project"]["optional-dependencies"]["postgres"]
    default = make_url("postgresql://db/mlflow").get_dialect().driver

    for driver in {default, "psycopg", "psycopg2"}:
        assert any(requirement.split("[")[0].split(">")[0].removesuffix("-binary") == driver for requirement in requirements)


def test_the_resume_line_names_the_uri_to_give_again_with_its_credentials(no_credentials):
    hint = resume_hint("search", "s", "/runs", tracking_uri=f"http://alice:{SECRET}@host:5000")

    assert hint == ("metaxl-tune search --name s --resume --storage /runs --tracking-uri 'http://alice:***@host:5000' "
                    "(its credentials in place of ***: they are never saved)")


@pytest.mark.parametrize(("variables", "uri"), [
    ({"MLFLOW_TRACKING_USERNAME": "alice", "MLFLOW_TRACKING_PASSWORD": SECRET}, f"http://alice:{SECRET}@host:5000"),
    ({"MLFLOW_TRACKING_TOKEN": SECRET}, f"https://alice:{SECRET}@host"),
    ({"MLFLOW_TRACKING_URI": f"http://alice:{SECRET}@host:5000"}, f"http://alice:{SECRET}@host:5000"),
    ({}, "http://host:5000"),
])
def test_the_resume_line_is_plain_when_the_environment_gives_the_credentials_again(no_credentials, variables, uri):
    for variable, value in variables.items():
        no_credentials.setenv(variable, value)

    assert resume_credentials(uri) == ""


def test_mlflows_variables_do_not_sign_in_to_a_database(no_credentials):
    no_credentials.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    no_credentials.setenv("MLFLOW_TRACKING_PASSWORD", SECRET)

    assert resume_credentials(f"postgresql://mlflow:{SECRET}@db/mlflow").startswith(" --tracking-uri 'postgresql://mlflow:***@db")


def test_a_tracker_saved_with_credentials_resumes_with_mlflows_variables(no_credentials, tmp_path):
    import pickle

    from metaxl_tune.results.tracking import Tracker
    from metaxl_tune.results.tracking_uri import usable_saved_uri

    saved = pickle.dumps(Tracker(f"http://alice:{SECRET}-resumed@host:5000", "s"))  # as Tune keeps its callbacks
    no_credentials.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    no_credentials.setenv("MLFLOW_TRACKING_PASSWORD", SECRET)

    # The resumed driver: the saved options' masked URI, the credentials from MLflow's variables.
    assert usable_saved_uri("http://alice:***@host:5000", tmp_path / "metaxl-search.json") == "http://host:5000"
    assert pickle.loads(saved).tracking_uri == "http://host:5000"
