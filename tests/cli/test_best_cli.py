"""`metaxl-tune best` through the command's Typer function, on real sqlite MLflow stores: a search
from before the seed tags whose trials all differ (search_store.py: each trial a one-seed config)
and a seed-aware one (seeded_store.py: configs over several seeds, pruned and failed trials)."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml
from typer.testing import CliRunner

from cli_apps import one_command_app
from metaxl_tune.cli.best import best
from metaxl_tune.config.identity import config_id
from processes import CLI, cli_env
from search_store import NAME, SHOWN, TRIALS, build_search_store
from seeded_store import NAME as SEEDED, build_seeded_store, searched_values

app = one_command_app(best)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    return build_search_store(tmp_path_factory.mktemp("best-store"))


@pytest.fixture(scope="module")
def seeded(tmp_path_factory) -> str:
    return build_seeded_store(tmp_path_factory.mktemp("seeded-store"))


def table_lines(output: str, rows: int) -> list[str]:
    """The table's three header lines, its rule and its rows."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("-  "))
    return lines[start - 3: start + 1 + rows]


def test_best_fits_80_columns_with_every_searched_parameter_and_no_cut_cell(store, tmp_path):
    result = CliRunner().invoke(app, ["best", "--name", NAME, "--tracking-uri", store, "-o", str(tmp_path / "b.yaml")],
                                env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert "…" not in result.output
    assert all(len(line) <= 80 for line in result.output.splitlines() if not line.startswith("Cost: "))
    lines = table_lines(result.output, len(TRIALS))
    rows = lines[4:]
    # A search from before the seed tags, whose trials all differ: each trial is a one-seed config.
    assert [row.split()[:3] for row in rows] == [["1", "1", "seed"], ["2", "1", "seed"], ["3", "1", "seed"]]
    for row, (trial_id, _, _) in zip(rows, sorted(TRIALS, key=lambda t: -t[2])):
        assert row.split()[-5:] == list(SHOWN[trial_id])
    assert "Every config has 1 seed (completed trial): ranked by its one best_dev_f1" in result.output


def test_a_narrow_terminal_drops_test_f1_first_and_wide_brings_it_back(store):
    narrow = CliRunner().invoke(app, ["best", "--name", NAME, "--tracking-uri", store], env={"COLUMNS": "60"})
    assert narrow.exit_code == 0 and "F1" not in " ".join(table_lines(narrow.output, len(TRIALS))[:3])
    hidden = next(line for line in narrow.output.splitlines() if line.startswith("(not shown at this width"))
    assert "test F1" in hidden
    wide = CliRunner().invoke(app, ["best", "--name", NAME, "--tracking-uri", store, "--wide"], env={"COLUMNS": "60"})
    assert wide.exit_code == 0 and "29.75" in wide.output and "not shown" not in wide.output


def test_best_prints_one_row_per_config_with_its_seeds(seeded):
    result = CliRunner().invoke(app, ["best", "--name", SEEDED, "--tracking-uri", seeded], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[:2] == [f"{SEEDED}: top 4 of 4 configs by mean best_dev_f1 over seeds (9 completed",
                         "  trials; 1 failed, 1 interrupted, 1 pruned are no seeds)"]
    assert table_lines(result.output, 4)[4:] == [
        "1       3  32.00 ± 1.15  33.00  1e-4   8",
        "2       3  31.00 ± 2.00  32.00  3e-4   16",
        "3       2  33.25 ± 0.25  34.25  1e-3   8",
        "4  1 seed         36.00  37.00  2e-3   32",
    ]
    behind = lines.index("config ids and the trials behind each row (their seeds):")
    assert lines[behind + 1] == f"1  {config_id(searched_values('A'))}  trials 00000 (seed 11), 00005 (seed 12), 00009 (seed 13)"
    assert all(len(line) <= 80 for line in lines if not line.startswith(("Cost: ", "# ")))


def chosen(text: str) -> dict:
    return json.loads(next(line for line in text.splitlines() if line.startswith("# chosen on: "))
                      .removeprefix("# chosen on: "))


def test_best_exports_the_incumbent_with_its_seeds_and_mean_and_train_loads_it(seeded, tmp_path):
    result = CliRunner().invoke(app, ["best", "--name", SEEDED, "--tracking-uri", seeded, "-o", str(tmp_path / "b.yaml")],
                                env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())  # the line wraps at 80 columns
    assert (f"wrote {tmp_path / 'b.yaml'} (config {config_id(searched_values('A'))}, best_dev_f1 32.00 ± 1.15 over 3 "
            f"seeds); reproduce with: metaxl-tune train --config {tmp_path / 'b.yaml'}") in said
    text = (tmp_path / "b.yaml").read_text()
    assert chosen(text) == {
        "search": SEEDED, "config_id": config_id(searched_values("A")), "metric": "best_dev_f1", "mean": 32.0,
        "stderr": 1.1547, "seeds": [11, 12, 13], "trials": ["ab12c_00000", "ab12c_00005", "ab12c_00009"],
        "rank": "1 of 4 configs, among those with 3 seeds"}
    # The config is A's (not B's lucky 35.0, nor C's pruned 40.0), as its first seed trained it;
    # the record is a comment, so `train --config` reads the file as any config.
    printed = subprocess.run([*CLI, "train", "--config", str(tmp_path / "b.yaml"), "--print-config"], cwd=tmp_path,
                             env=cli_env(tmp_path / "cache"), capture_output=True, text=True, timeout=300)
    assert printed.returncode == 0, printed.stderr
    config = yaml.safe_load(printed.stdout)
    assert (config["meta_lr"], config["rtn_bottleneck"], config["seed"]) == (1e-4, 8, 11)


def test_an_old_search_without_seed_tags_ranks_its_configs_from_their_values(tmp_path):
    uri = build_seeded_store(tmp_path, tagged=False)
    result = CliRunner().invoke(app, ["best", "--name", SEEDED, "--tracking-uri", uri], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert [line.split()[:2] for line in table_lines(result.output, 4)[4:]] == [["1", "3"], ["2", "3"], ["3", "2"], ["4", "1"]]
    # Its config id is derived from the searched values it recorded.
    assert chosen(result.output)["config_id"] == config_id({"meta_lr": "0.0001", "rtn_bottleneck": "8"})
    assert chosen(result.output)["seeds"] == [11, 12, 13]
