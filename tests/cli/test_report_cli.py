"""`metaxl-tune report` through the command's Typer function (registered on a throwaway app)."""

from __future__ import annotations

import csv
import io

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from cli_apps import one_command_app
from metaxl_tune.cli.report import report
from metaxl_tune.results.mlflow_filters import tags_equal
from search_store import NAME as SEARCH, SHOWN, build_search_store
from test_report import LATEX, MARKDOWN, NAME, shared_store

app = one_command_app(report)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    return shared_store(tmp_path_factory)


def invoke(*args: str, cwd):
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(cwd)
        return CliRunner().invoke(app, ["report", *args])


def parent_artifacts(uri: str) -> set[str]:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("metaxl-tune").experiment_id
    parent = client.search_runs([experiment], tags_equal({"metaxl.search": NAME, "metaxl.role": "search"}))[0]
    return {item.path for item in client.list_artifacts(parent.info.run_id, "report")}


def test_markdown_goes_to_stdout_and_the_plot_next_to_the_working_directory(store, tmp_path):
    result = invoke("--name", NAME, "--tracking-uri", store, cwd=tmp_path)
    assert result.exit_code == 0, result.output
    assert result.stdout == MARKDOWN
    assert (tmp_path / f"report-{NAME}.png").is_file()
    assert "Cost: 2.10 GPU-hours + 0.01 CPU-hours over 14 trials" in result.stderr
    assert {"report/report-methods-demo.md", "report/report-methods-demo.png"} <= parent_artifacts(store)


def test_latex_to_a_file_with_an_explicit_plot(store, tmp_path):
    result = invoke("--name", NAME, "--format", "latex", "-o", "out/table.tex", "--plot", "fig.png",
                    "--tracking-uri", store, cwd=tmp_path)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "table.tex").read_text() == LATEX and result.stdout == ""
    assert (tmp_path / "fig.png").read_bytes().startswith(b"\x89PNG")
    assert {"report/table.tex", "report/fig.png"} <= parent_artifacts(store)


def test_csv_on_stdout_parses(store, tmp_path):
    result = invoke("--name", NAME, "--format", "csv", "--tracking-uri", store, cwd=tmp_path)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [row["setting"] for row in rows] == ["target-only", "jt", "metaxl"]


@pytest.mark.parametrize(("args", "message"), [
    (["--name", "nope"], "error: no search named nope in sqlite:///"),
    (["--name", NAME, "--format", "html"], "error: --format html: use md, latex, csv"),
])
def test_user_errors_are_one_line_and_exit_2(store, tmp_path, args, message):
    result = invoke(*args, "--tracking-uri", store, cwd=tmp_path)
    assert result.exit_code == 2
    assert result.stderr.startswith(message) and result.stderr.count("\n") == 1
    assert result.stdout == ""


def test_a_search_report_fits_80_columns_with_every_searched_parameter(tmp_path_factory, tmp_path):
    store = build_search_store(tmp_path_factory.mktemp("search-store"))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path)
        result = CliRunner().invoke(app, ["report", "--name", SEARCH, "--tracking-uri", store], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    rows = [line for line in result.stdout.splitlines() if line.startswith("| β=")]
    assert len(rows) == 3 and all(len(row) <= 80 for row in rows) and "…" not in result.stdout
    for values in SHOWN.values():
        label = "β={} r={} at={} src={} detach={}".format(*values)
        assert any(row.startswith(f"| {label} |") for row in rows), rows
    assert "β = meta_lr, r = rtn_bottleneck, at = rtn_layers, src = source, detach = rtn_detach_input" in result.stdout
