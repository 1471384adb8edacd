"""A finished tiny search, then what a user does with it: the parent run's summary, `ui --name`
in a real headless browser (its runs page lists the parent and the trials with their searched
parameters), and `best --compare` with a reduced budget (the table's layout, not its scores).
The search and the comparison join the session's shared Ray head (conftest.ray_head)."""

from __future__ import annotations

import html
import json
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from metaxl_tune.results.config_ranking import ranked_configs
from metaxl_tune.results.mlflow_filters import tag_equals
from metaxl_tune.results.tracking import Tracker
from processes import CLI, cli_env, free_port, kill_session, run_cli
from search_runs import MACHINERY_SIZES, ONE_WORKER

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# A dot and a dash: the name rule allows both, and every command must find the search by it.
NAME = "browsed-v1.2"


@pytest.fixture(scope="module")
def finished_search(tmp_path_factory, shared_cache, ray_head):
    workdir = tmp_path_factory.mktemp("ui-search")
    result = run_cli(["search", "--task", "ner", "--target", "tk", "--preset", "demo", "--num-samples", "2",
                      "--epochs", "1", *MACHINERY_SIZES,
                      *ONE_WORKER, "--name", NAME], cwd=workdir, cache_dir=shared_cache, ray=ray_head)
    assert result.returncode == 0, result.stdout + result.stderr
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("metaxl-tune")
    runs = client.search_runs([experiment.experiment_id], tag_equals("metaxl.search", NAME))
    return workdir, client, experiment, runs


def test_the_experiment_is_model_training_and_the_parent_run_summarises_the_search(finished_search):
    _, _, experiment, runs = finished_search
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    parent = next(run for run in runs if run.data.tags["metaxl.role"] == "search")
    trials = [run for run in runs if run.data.tags["metaxl.role"] == "trial"]
    metrics = parent.data.metrics
    assert metrics["trials_total"] == 2 == metrics["trials_completed"] + metrics["trials_pruned"] + metrics["trials_failed"]
    assert metrics["best_dev_f1"] == max(trial.data.metrics["best_dev_f1"] for trial in trials)
    assert metrics["device_hours"] == pytest.approx(sum(t.data.metrics["device_seconds"] for t in trials) / 3600)
    assert parent.data.params == {"space": "demo.yaml", "metric": "best_dev_f1"}


def test_the_parent_run_holds_the_per_config_table_as_best_ranks_it(finished_search, tmp_path):
    workdir, client, _, runs = finished_search
    parent = next(run for run in runs if run.data.tags["metaxl.role"] == "search")
    completed = [run for run in runs if run.data.tags.get("metaxl.outcome") == "completed"]
    assert json.loads(parent.data.tags["mlflow.loggedArtifacts"]) == [{"path": "configs.json", "type": "table"}]
    path = client.download_artifacts(parent.info.run_id, "configs.json", str(tmp_path))
    table = json.loads(Path(path).read_text(encoding="utf-8"))
    assert table["columns"][:4] == ["rank", "config_id", "seeds", "mean best_dev_f1"]
    ranked = ranked_configs(Tracker(f"sqlite:///{workdir / 'mlflow.db'}", NAME), "best_dev_f1")
    assert [row[1] for row in table["data"]] == [row.config_id for row in ranked.rows]
    assert sum(row[2] for row in table["data"]) == len(completed) >= 1


def page_text(dom: str) -> str:
    text = re.sub(r"<script.*?</script>|<style.*?</style>", " ", dom, flags=re.S)
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", text)))


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_the_runs_page_lists_the_parent_and_its_trials_with_their_searched_parameters(finished_search):
    workdir, _, _, runs = finished_search
    port = free_port()
    server = subprocess.Popen([*CLI, "ui", "--name", NAME, "--port", str(port)], cwd=workdir,
                              env=cli_env(workdir), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True, start_new_session=True)
    try:
        url = None
        for line in server.stdout:
            if line.startswith(f"search {NAME}: "):
                url = line.split(": ", 1)[1].strip()
                break
        assert url and "viewStateShareKey=" in url
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).read() == b"OK":
                    break
            except OSError:
                time.sleep(0.5)
        # The UI is a JS app: give it virtual time to fetch and render; a wide window keeps
        # every column rendered (the grid draws only the visible ones).
        dom = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=2400,1400",
             "--virtual-time-budget=30000", "--dump-dom", url],
            capture_output=True, text=True, timeout=180, check=True,
        ).stdout
    finally:
        kill_session(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    text = page_text(dom)
    assert "Group: search" in text and "Group: trial" in text
    parent = next(run for run in runs if run.data.tags["metaxl.role"] == "search")
    trials = [run for run in runs if run.data.tags["metaxl.role"] == "trial"]
    assert f" {parent.info.run_name} " in text
    searched = parent.data.tags["metaxl.searched"].split(",")
    for trial in trials:
        assert f" {trial.info.run_name} " in text
        for key in searched:
            assert f" {key} " in text  # its column
            if key in trial.data.params:
                assert trial.data.params[key] in text  # the trial's value


def test_best_compare_prints_the_comparison_table(finished_search, shared_cache, ray_head):
    workdir = finished_search[0]
    result = run_cli(["best", "--name", NAME, "--compare", "--seeds", "1"], cwd=workdir, cache_dir=shared_cache,
                     ray=ray_head)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    start = lines.index(next(line for line in lines if line.startswith(f"{NAME}: the winner against the baselines")))
    rule = next(index for index in range(start + 1, len(lines)) if set(lines[index]) == {"-", " "})
    header = " ".join(lines[start + 1:rule]).split()  # long headers wrap onto several lines
    assert sorted(header) == sorted(["setting", "dev", "F1", "test", "F1", "Δ", "test", "vs", "jt"])
    table = lines[start + 1:rule + 7]
    target_only, jt, metaxl = (row.split() for row in lines[rule + 1:rule + 4])
    assert [target_only[0], jt[0], metaxl[0]] == ["target-only", "jt", "metaxl"]
    assert len(jt) == 3 and len(target_only) == len(metaxl) == 4  # one seed: no ± part; Δ except for jt
    assert all(re.fullmatch(r"[+-]\d+\.\d\d", row[-1]) for row in (target_only, metaxl))
    assert lines[rule + 4] == "F1 in percent, mean ± std over 1 runs (seeds); test F1 at the best dev epoch"
    see = lines.index(f"see them in MLflow: metaxl-tune ui --name {NAME}")
    assert re.fullmatch(rf" +metaxl-tune ui --name {re.escape(NAME)}-compare-\d{{8}}-\d{{6}}", lines[see + 1])
    assert all(len(line) <= 80 for line in table + lines[rule + 5:see + 2]), table
    # The optimism gap: the winner's fresh seed (1) against the mean the search reported for it.
    said = " ".join(" ".join(lines[rule + 5:see]).split())
    assert said.startswith("optimism gap = fresh-seed mean minus the search's mean for the config; "
                           "negative: the search overstated it optimism gap of best_dev_f1: "), said
    gap, fresh, reported = re.search(r"optimism gap of best_dev_f1: ([+-]\d+\.\d\d) = fresh-seed mean (\d+\.\d\d) "
                                     r"\(1 seed\) - the search's mean (\d+\.\d\d) \(\d+ seeds?\)", said).groups()
    assert fresh == metaxl[1]  # the comparison's MetaXL dev F1 (one seed)
    ranked = ranked_configs(Tracker(f"sqlite:///{workdir / 'mlflow.db'}", NAME), "best_dev_f1")
    assert reported == f"{ranked.incumbent.mean:.2f}"
    assert abs(float(gap) - (float(fresh) - float(reported))) <= 0.011
    assert "optimism gap of best_test_f1: " in said


def test_the_dotted_name_round_trips_through_best_report_and_ui(finished_search, shared_cache):
    workdir, client, experiment, runs = finished_search
    best = run_cli(["best", "--name", NAME, "-o", "winner.yaml"], cwd=workdir, cache_dir=shared_cache)
    assert best.returncode == 0, best.stdout + best.stderr
    configs = len(ranked_configs(Tracker(f"sqlite:///{workdir / 'mlflow.db'}", NAME), "best_dev_f1").rows)
    assert best.stdout.startswith(f"{NAME}: top {configs} of {configs} configs by mean best_dev_f1")
    assert (workdir / "winner.yaml").is_file()
    report = run_cli(["report", "--name", NAME, "--format", "csv"], cwd=workdir, cache_dir=shared_cache)
    assert report.returncode == 0, report.stdout + report.stderr
    assert report.stdout.splitlines()[0].startswith("setting,")
    # ui --name prints its view's URL before the server starts; the view's stored filter must
    # select exactly this search's runs.
    server = subprocess.Popen([*CLI, "ui", "--name", NAME, "--port", str(free_port())], cwd=workdir,
                              env=cli_env(workdir), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True, start_new_session=True)
    try:
        lines = [server.stdout.readline(), server.stdout.readline()]
    finally:
        kill_session(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    assert lines[1].startswith(f"search {NAME}: ") and "viewStateShareKey=metaxl-browsed-v1.2" in lines[1], lines
    view = json.loads(client.get_experiment(experiment.experiment_id).tags[f"mlflow.sharedViewState.metaxl-{NAME}"])
    shown = client.search_runs([experiment.experiment_id], view["searchFilter"])
    assert {run.info.run_id for run in shown} == {run.info.run_id for run in runs} and len(runs) == 3
