"""Paper-style reports from a real sqlite MLflow store written the way the ablation runner writes it."""

from __future__ import annotations

import csv
import io
import statistics
from pathlib import Path

import pytest
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from metaxl_tune.results.report import build_table, make_report, plot, to_csv, to_latex, to_markdown
from metaxl_tune.results.report_data import collect
from metaxl_tune.results.ranking import ResultsError
from metaxl_tune.results.tracking import Tracker

NAME = "methods-demo"
SETTINGS = ("target-only", "jt", "metaxl")  # the study's order, not sorted
# best_test_f1 per (setting, target) over seeds 1 and 2.
VALUES = {
    ("target-only", "tk"): (50.0, 53.0), ("target-only", "qu"): (40.0, 42.0),
    ("jt", "tk"): (65.5, 66.5), ("jt", "qu"): (60.0, 61.0),
    ("metaxl", "tk"): (64.0, 67.0), ("metaxl", "qu"): (62.0, 63.0),
}
DEVICE_SECONDS = 600.0  # per completed trial, on cuda


def _trial(client, experiment, parent, search, tags, params, metrics):
    run = client.create_run(experiment, tags={
        "metaxl.search": search, "metaxl.role": "trial", "mlflow.parentRunId": parent, **tags})
    client.log_batch(run.info.run_id, params=[Param(key, str(value)) for key, value in params.items()],
                     metrics=[Metric(key, value, 0, 3) for key, value in metrics.items()])
    client.set_terminated(run.info.run_id, "FINISHED" if tags.get("metaxl.outcome") == "completed" else "KILLED")
    return run.info.run_id


def build_store(directory: Path) -> str:
    """An ablation (2 targets × 3 settings × 2 seeds, plus a pruned and a failed trial that must not
    count), a plain search without setting tags, and a search whose only trial was pruned."""
    uri = f"sqlite:///{directory / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("metaxl-tune", artifact_location=(directory / "mlartifacts").as_uri())
    parent = client.create_run(experiment, tags={
        "metaxl.search": NAME, "metaxl.role": "search", "metaxl.kind": "ablation", "metaxl.study": "methods",
        "metaxl.settings_order": ",".join(SETTINGS)}).info.run_id
    trial = 0
    for (setting, target), values in VALUES.items():
        for seed, value in enumerate(values, start=1):
            trial += 1
            _trial(client, experiment, parent, NAME,
                   {"metaxl.trial_id": f"t{trial:02d}", "metaxl.setting": setting, "metaxl.outcome": "completed",
                    "metaxl.device_type": "cuda"},
                   {"target": target, "seed": seed, "method": setting.replace("target-only", "target_only"),
                    "task": "ner"},
                   {"best_test_f1": value, "best_dev_f1": value + 1, "dev_f1": value - 1, "test_f1": value - 2,
                    "wall_seconds": DEVICE_SECONDS, "device_seconds": DEVICE_SECONDS})
    _trial(client, experiment, parent, NAME,
           {"metaxl.trial_id": "pruned", "metaxl.setting": "metaxl", "metaxl.outcome": "pruned",
            "metaxl.device_type": "cuda"},
           {"target": "tk", "seed": 3, "method": "metaxl", "task": "ner"},
           {"best_test_f1": 99.0, "device_seconds": 360.0})
    _trial(client, experiment, parent, NAME,
           {"metaxl.trial_id": "failed", "metaxl.setting": "jt", "metaxl.outcome": "failed",
            "metaxl.device_type": "cpu"},
           {"target": "qu", "seed": 3, "method": "jt", "task": "ner"},
           {"best_test_f1": 0.0, "device_seconds": 36.0})

    search = client.create_run(experiment, tags={
        "metaxl.search": "plain", "metaxl.role": "search", "metaxl.kind": "search",
        "metaxl.searched": "meta_lr,seed"}).info.run_id
    for trial, meta_lr, value in (("a", "3e-05", 70.0), ("b", "1e-06", 72.0)):
        _trial(client, experiment, search, "plain",
               {"metaxl.trial_id": trial, "metaxl.outcome": "completed", "metaxl.device_type": "cpu"},
               {"target": "tk", "seed": 42, "meta_lr": meta_lr}, {"best_test_f1": value, "device_seconds": 1800.0})

    stopped = client.create_run(experiment, tags={"metaxl.search": "stopped", "metaxl.role": "search"}).info.run_id
    _trial(client, experiment, stopped, "stopped", {"metaxl.trial_id": "x", "metaxl.outcome": "pruned"},
           {"target": "tk", "seed": 1}, {"best_test_f1": 1.0})
    return uri


def shared_store(tmp_path_factory) -> str:
    """One store per test session, shared with the CLI tests (creating an MLflow database takes
    seconds). Tests only add artifacts under distinct names, so they do not see each other."""
    directory = tmp_path_factory.getbasetemp() / "report-store"
    if not (directory / "mlflow.db").exists():
        directory.mkdir(exist_ok=True)
        build_store(directory)
    return f"sqlite:///{directory / 'mlflow.db'}"


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    return shared_store(tmp_path_factory)


@pytest.fixture(scope="module")
def data(store):
    return collect(Tracker(store, NAME))


def test_cells_hold_the_completed_seeds_and_their_numbers_match_mlflow(data, store):
    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("metaxl-tune").experiment_id
    runs = client.search_runs([experiment], "tags.`metaxl.search` = 'methods-demo' and tags.`metaxl.outcome` = 'completed'")
    expected: dict[tuple[str, str], list[float]] = {}
    for run in sorted(runs, key=lambda run: int(run.data.params["seed"])):
        key = (run.data.tags["metaxl.setting"], run.data.params["target"])
        expected.setdefault(key, []).append(run.data.metrics["best_test_f1"])
    assert len(runs) == 12
    assert data.settings == list(SETTINGS)
    assert data.targets == ["qu", "tk"]
    assert {key: list(cell.values) for key, cell in data.cells.items()} == expected

    table = build_table(data)
    for row in table.rows:
        means = []
        for column, target in enumerate(table.targets):
            seeds = expected[(row.setting, target)]
            assert row.cells[column].mean == pytest.approx(statistics.mean(seeds))
            assert row.cells[column].std == pytest.approx(statistics.stdev(seeds))
            assert row.cells[column].n == 2
            means.append(statistics.mean(seeds))
        assert row.avg == pytest.approx(statistics.mean(means))


def test_delta_against_jt_best_marks_and_pruned_or_failed_trials_left_out(data):
    table = build_table(data)
    rows = {row.setting: row for row in table.rows}
    assert table.reference == "jt"
    assert rows["metaxl"].deltas == pytest.approx((62.5 - 60.5, 65.5 - 66.0, 64.0 - 63.25))
    assert rows["target-only"].deltas == pytest.approx((41.0 - 60.5, 51.5 - 66.0, 46.25 - 63.25))
    assert rows["jt"].deltas == (0.0, 0.0, 0.0)
    # qu: metaxl; tk: jt; avg: metaxl. The pruned 99.0 and the failed 0.0 would change all three.
    assert table.best == {(2, 0), (1, 1), (2, 2)}
    assert 99.0 not in data.values("metaxl", "tk") and 0.0 not in data.values("jt", "qu")
    assert data.cost.outcomes == {"completed": 12, "pruned": 1, "failed": 1}
    assert data.cost.gpu_hours == pytest.approx((12 * DEVICE_SECONDS + 360) / 3600)
    assert data.cost.cpu_hours == pytest.approx(36 / 3600)


MARKDOWN = """\
**methods-demo (methods)**

| setting | qu | tk | avg |
|:--|--:|--:|--:|
| target-only | 41.00 ± 1.41 (-19.50) | 51.50 ± 2.12 (-14.50) | 46.25 (-17.00) |
| jt | 60.50 ± 0.71 | **66.00** ± 0.71 | 63.25 |
| metaxl | **62.50** ± 0.71 (+2.00) | 65.50 ± 2.12 (-0.50) | **64.00** (+0.75) |

Mean ± std of best_test_f1 over seeds (n = 2); avg = mean over targets; Δ vs jt in parentheses; best per column in bold.

Cost: 2.10 GPU-hours + 0.01 CPU-hours over 14 trials (12 completed, 1 failed, 1 pruned).
"""

LATEX = r"""\begin{table}[t]
\centering
\begin{tabular}{lrrr}
\toprule
Setting & qu & tk & avg \\
\midrule
target-only & 41.00 $\pm$ 1.41 ($-19.50$) & 51.50 $\pm$ 2.12 ($-14.50$) & 46.25 ($-17.00$) \\
jt & 60.50 $\pm$ 0.71 & \textbf{66.00} $\pm$ 0.71 & 63.25 \\
metaxl & \textbf{62.50} $\pm$ 0.71 ($+2.00$) & 65.50 $\pm$ 2.12 ($-0.50$) & \textbf{64.00} ($+0.75$) \\
\bottomrule
\end{tabular}
\caption{methods-demo (methods): mean $\pm$ std of best\_test\_f1 over seeds (n = 2); avg = mean over targets; $\Delta$ vs jt in parentheses; best per column in bold.}
\par\smallskip\footnotesize Cost: 2.10 GPU-hours + 0.01 CPU-hours over 14 trials (12 completed, 1 failed, 1 pruned).
\end{table}
"""


def test_markdown_is_pinned(data):
    assert to_markdown(data) == MARKDOWN


def test_latex_is_pinned(data):
    assert to_latex(data) == LATEX


def test_csv_parses_with_numbers_best_marks_and_deltas(data):
    rows = list(csv.DictReader(io.StringIO(to_csv(data))))
    assert list(rows[0]) == ["setting", "qu_mean", "qu_std", "qu_n", "tk_mean", "tk_std", "tk_n", "avg",
                             "delta_qu", "delta_tk", "delta_avg"]
    assert [row["setting"] for row in rows] == list(SETTINGS)
    metaxl = rows[2]
    assert metaxl["qu_mean"] == "62.5000*" and metaxl["tk_mean"] == "65.5000" and metaxl["avg"] == "64.0000*"
    assert float(metaxl["tk_std"]) == pytest.approx(statistics.stdev(VALUES[("metaxl", "tk")]), abs=1e-4)
    assert metaxl["qu_n"] == "2" and metaxl["delta_avg"] == "+0.7500"
    assert rows[1]["tk_mean"] == "66.0000*"


def test_plot_writes_a_png(data, tmp_path):
    path = plot(data, tmp_path / "figures" / "methods.png")
    assert path.read_bytes().startswith(b"\x89PNG") and path.stat().st_size > 5000


def test_make_report_attaches_table_and_plot_to_the_parent_run(store, tmp_path):
    tracker = Tracker(store, NAME)
    report = make_report(tracker, "latex", output=tmp_path / "table2.tex")
    assert (tmp_path / "table2.tex").read_text() == LATEX and report.plot_path == tmp_path / "table2.png"
    assert report.attached == ["report/table2.tex", "report/table2.png"]
    listed = {item.path for item in tracker.client.list_artifacts(report.data.parent_run_id, "report")}
    assert {"report/table2.tex", "report/table2.png"} <= listed
    parent = tracker.client.get_run(report.data.parent_run_id)
    assert parent.data.tags["metaxl.role"] == "search"


def test_a_plain_search_gets_rows_from_its_searched_parameters(store):
    data = collect(Tracker(store, "plain"))
    assert data.settings == ["β=1e-6", "β=3e-5"]  # seed is a replicate, not a setting
    table = build_table(data)
    assert table.reference is None and table.rows[0].deltas == ()
    assert table.best == {(0, 0), (0, 1)}
    assert data.cost.line() == "Cost: 1.00 CPU-hours over 2 trials (2 completed)"
    assert "(+" not in to_markdown(table) and "delta" not in to_csv(table)


@pytest.mark.parametrize(("name", "metric", "message"), [
    ("nope", "best_test_f1", "no search named nope in sqlite:///"),
    ("stopped", "best_test_f1", "search stopped has no completed trial (1 pruned); nothing to report yet"),
    (NAME, "accuracy", "--metric accuracy: no completed trial of methods-demo logged it; logged: best_dev_f1, "),
])
def test_missing_search_trials_or_metric_are_one_line_errors(store, name, metric, message):
    with pytest.raises(ResultsError) as error:
        collect(Tracker(store, name), metric=metric)
    assert message in str(error.value) and "\n" not in str(error.value)
