"""`metaxl-tune best` through the command's Typer function, on a real sqlite MLflow store."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from metaxl_tune.cli.best import best
from search_store import NAME, SHOWN, TRIALS, build_search_store

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.command()(best)


@app.callback()
def root() -> None:
    """Keeps `best` a subcommand, as in the real app."""


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    return build_search_store(tmp_path_factory.mktemp("best-store"))


def table_lines(output: str) -> list[str]:
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("-  "))
    return lines[start - 3: start + 1 + len(TRIALS)]


def test_best_fits_80_columns_with_every_searched_parameter_and_no_cut_cell(store, tmp_path):
    result = CliRunner().invoke(app, ["best", "--name", NAME, "--tracking-uri", store, "-o", str(tmp_path / "b.yaml")],
                                env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert "…" not in result.output
    lines = table_lines(result.output)
    assert all(len(line) <= 80 for line in lines), "\n".join(lines)
    rows = lines[4:]
    assert [row.split()[0] for row in rows] == ["1", "2", "3"]
    for row, (trial_id, _, _) in zip(rows, sorted(TRIALS, key=lambda t: -t[2])):
        assert row.split()[-5:] == list(SHOWN[trial_id])


def test_a_narrow_terminal_drops_the_outcome_first_and_wide_brings_it_back(store, tmp_path):
    narrow = CliRunner().invoke(app, ["best", "--name", NAME, "--tracking-uri", store], env={"COLUMNS": "60"})
    assert narrow.exit_code == 0 and "completed" not in table_lines(narrow.output)[2]
    hidden = next(line for line in narrow.output.splitlines() if line.startswith("(not shown at this width"))
    assert "outcome" in hidden
    wide = CliRunner().invoke(app, ["best", "--name", NAME, "--tracking-uri", store, "--wide"], env={"COLUMNS": "60"})
    assert wide.exit_code == 0 and "completed" in wide.output and "not shown" not in wide.output
