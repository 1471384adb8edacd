"""A search against an authenticated MLflow server (basic auth) backed by PostgreSQL, through the
real CLI: credentials in the URI and in MLflow's variables reach the server, and the password
shows nowhere, neither in any output, nor in any file, nor in any MLflow field.

One small search (demo preset, one trial of one epoch) is shared by every test; the commands
after it (sync, report) are the ones a user runs next.
"""

from __future__ import annotations

import secrets
import subprocess

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from metaxl_tune.cli.app import app
from processes import CLI, cli_env
from search_runs import MACHINERY_SIZES, ONE_WORKER
from secure_servers import AuthenticatedMlflowServer, PostgresCluster, postgres_bindir

USER = "alice"
PASSWORD = f"S3cret-{secrets.token_hex(6)}"
"""The MLflow user's password: random, so that finding it anywhere is a leak, not a coincidence."""
DATABASE_PASSWORD = f"Pg-{secrets.token_hex(6)}"
NAME = "authed"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    if postgres_bindir() is None:
        pytest.skip("PostgreSQL is not installed here (.ci/run installs it)")
    root = tmp_path_factory.mktemp("auth-tracking")
    (root / "server").mkdir()
    database = PostgresCluster(DATABASE_PASSWORD)
    try:
        server = AuthenticatedMlflowServer(root / "server", database.uri(), user=USER, password=PASSWORD)
    except BaseException:
        database.stop()
        raise
    yield database, server, root
    server.stop()
    database.stop()


@pytest.fixture(scope="module")
def session(stack, shared_cache, ray_head):
    """The search through a URI with credentials (the real CLI in its own process, joining the
    session's Ray head as a driver on a cluster does); then sync and report through MLflow's variables alone (the saved options hold no
    password), in this process."""
    database, server, root = stack
    work = root / "work"
    work.mkdir()
    # Ray's session folder (the head's, where the driver's and the workers' logs go) is searched
    # for the password too.
    ray_dir = ray_head.temp_dir
    with_password = f"http://{USER}:{PASSWORD}@127.0.0.1:{server.port}"
    search = subprocess.run(
        [*CLI, "search", "--task", "ner", "--target", "tk", "--preset", "demo", "--num-samples", "2", "--epochs", "1",
         *MACHINERY_SIZES, *ONE_WORKER, "--name", NAME, "--tracking-uri", with_password, *ray_head.flags],
        cwd=work, env=cli_env(shared_cache, ray_head), capture_output=True, text=True, timeout=600)
    results = {"search": search.stdout + search.stderr}
    storage = str(work / "metaxl-searches")
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        patch.setenv("MLFLOW_TRACKING_USERNAME", USER)
        patch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
        runner = CliRunner()
        sync = runner.invoke(app, ["sync", "--name", NAME, "--storage", storage])
        report = runner.invoke(app, ["report", "--name", NAME, "--metric", "best_dev_f1", "--tracking-uri", server.uri,
                                     "-o", str(work / "report.md")])
    results.update(sync=sync.output, report=report.output)
    yield server, root, ray_dir, results, {"search": search.returncode, "sync": sync.exit_code, "report": report.exit_code}


def _client(server) -> MlflowClient:
    return MlflowClient(f"http://{USER}:{PASSWORD}@127.0.0.1:{server.port}")


def _runs(server) -> list:
    client = _client(server)
    experiment = client.get_experiment_by_name("metaxl-tune")
    return client.search_runs([experiment.experiment_id], max_results=100)


def test_a_search_logs_to_the_server_through_a_uri_with_credentials(session):
    # Also the search's record on a tracking server at all: the parent and both trials there,
    # closed, and no local store made beside it.
    server, root, _, output, codes = session
    runs = _runs(server)
    roles = sorted(run.data.tags.get("metaxl.role") for run in runs)

    assert codes["search"] == 0, output["search"]
    assert f"tracking http://{USER}:***@127.0.0.1:{server.port}" in output["search"]
    assert roles == ["search", "trial", "trial"]
    assert {run.info.status for run in runs} == {"FINISHED"}
    trials = [run for run in runs if run.data.tags["metaxl.role"] == "trial"]
    assert all("best_dev_f1" in trial.data.metrics and trial.data.params["epochs"] == "1" for trial in trials)
    assert not (root / "work" / "mlflow.db").exists() and not (root / "work" / "metaxl-runs").exists()


def test_the_credential_variables_reach_the_server_from_the_saved_options(session):
    server, root, _, output, codes = session
    saved = (root / "work" / "metaxl-searches" / NAME / "metaxl-search.json").read_text()
    (parent,) = [run for run in _runs(server) if run.data.tags["metaxl.role"] == "search"]
    attached = {artifact.path for artifact in _client(server).list_artifacts(parent.info.run_id, "report")}

    # Saved masked; sync found the server again from the saved options and MLflow's variables.
    assert f'"tracking_uri": "http://{USER}:***@127.0.0.1:{server.port}"' in saved
    assert codes["sync"] == 0, output["sync"]
    assert f"written to http://127.0.0.1:{server.port}" in output["sync"]
    # report writes to the run (its table and plot) with the variables alone.
    assert codes["report"] == 0, output["report"]
    assert attached == {"report/report.md", "report/report.png"}


def test_no_password_in_any_output(session):
    *_, output, _ = session

    for command, text in output.items():
        assert PASSWORD not in text, command
        assert DATABASE_PASSWORD not in text, command


def test_no_password_in_any_file(session):
    _, root, ray_dir, _, _ = session
    # The search's storage and runs folder, the report and config files, Ray's session logs,
    # and every artifact the server stored for the runs (config.yaml, weights, plots, report).
    folders = [root / "work", ray_dir, root / "server" / "artifacts"]
    files = [path for folder in folders for path in folder.rglob("*") if path.is_file() and not path.is_symlink()]
    leaking = [str(path) for path in files
               if PASSWORD.encode() in path.read_bytes() or DATABASE_PASSWORD.encode() in path.read_bytes()]

    assert any(path.name == "tuner.pkl" for path in files) and any(path.name == "config.yaml" for path in files)
    assert leaking == []


def test_no_password_in_any_mlflow_field(session):
    server, *_ = session
    client = _client(server)
    experiment = client.get_experiment_by_name("metaxl-tune")
    fields = [*experiment.tags.values(), *experiment.tags]
    for run in _runs(server):
        fields += [run.info.run_name, run.info.artifact_uri, *run.data.tags.values(), *run.data.params.values(),
                   *run.data.tags, *run.data.params, *run.data.metrics]

    assert len(fields) > 50
    assert not [field for field in fields if PASSWORD in field or DATABASE_PASSWORD in field]


def test_wrong_or_missing_credentials_are_one_line(session, monkeypatch):
    server, *_ = session
    for variable in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        monkeypatch.delenv(variable, raising=False)
    runner = CliRunner()

    wrong = runner.invoke(app, ["best", "--name", NAME, "--tracking-uri", f"http://{USER}:not-{PASSWORD}@127.0.0.1:{server.port}"])
    missing = runner.invoke(app, ["best", "--name", NAME, "--tracking-uri", server.uri])

    assert wrong.exit_code == 2 and wrong.output.count("\n") == 1, wrong.output
    assert "refused the credentials from the URI (401 Unauthorized)" in wrong.output and PASSWORD not in wrong.output
    assert missing.exit_code == 2 and missing.output.count("\n") == 1, missing.output
    assert "the server asks for credentials (401 Unauthorized)" in missing.output


def test_resume_without_the_credentials_names_what_to_pass(session, monkeypatch):
    server, root, *_ = session
    for variable in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        monkeypatch.delenv(variable, raising=False)
    storage = root / "work" / "metaxl-searches"
    before = sorted(path.name for path in (storage / NAME).iterdir())

    result = CliRunner().invoke(app, ["search", "--name", NAME, "--resume", "--storage", str(storage)])

    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert f"http://{USER}:***@127.0.0.1:{server.port}, had credentials, which are never saved" in result.output
    assert "pass it again with --tracking-uri" in result.output
    assert sorted(path.name for path in (storage / NAME).iterdir()) == before


def test_the_database_behind_the_server_is_one_line_naming_the_server(stack, session):
    database, *_ = stack
    # The [postgres] driver connects with the password; the runs' artifacts live behind the server.
    result = CliRunner().invoke(app, ["best", "--name", NAME, "--tracking-uri", database.uri()])

    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert f"postgresql://mlflow:***@127.0.0.1:{database.port}/mlflow: the artifacts of this store are served by an MLflow server" in result.output
    assert DATABASE_PASSWORD not in result.output
