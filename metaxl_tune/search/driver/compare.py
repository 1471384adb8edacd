"""Does the search's winner beat the baselines? Target-only, JT and the best MetaXL config,
trained the same way over seeds, as one small table (paper Table 2's question on your data).

The comparison is an ordinary ablation (resumable, tracked in MLflow, reportable): its rows
are the winner's config with ``method`` set to ``target-only`` and ``jt`` (the RTN fields are
then unused), and the winner itself. ``comparison_table`` renders it for an 80-column terminal:

    setting       dev F1         test F1        Δ test vs jt
    target-only   30.12 ± 1.20   28.40 ± 2.10   -5.31
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

from metaxl_tune.config import RunConfig
from metaxl_tune.common.names import derived_name
from metaxl_tune.common.terminal import Column, render_table

SETTINGS = ("target-only", "jt", "metaxl")
REFERENCE = "jt"


def comparison_configs(winner: RunConfig) -> dict[str, RunConfig]:
    return {"target-only": winner.replace(method="target-only"), "jt": winner.replace(method="jt"), "metaxl": winner}


@dataclass(frozen=True)
class Summary:
    """mean ± sample std of one setting's per-seed values."""

    values: tuple[float, ...]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    def text(self) -> str:
        if len(self.values) < 2:
            return f"{self.mean:.2f}"
        return f"{self.mean:.2f} ± {statistics.stdev(self.values):.2f}"


def comparison_table(dev: dict[str, tuple[float, ...]], test: dict[str, tuple[float, ...]], *,
                     width: int | None = None) -> str:
    """Rows in SETTINGS order (those present); Δ is the test F1 mean minus JT's, in points."""
    rows = [setting for setting in SETTINGS if setting in test]
    reference = Summary(test[REFERENCE]).mean if REFERENCE in test else None
    seeds = sorted({len(values) for values in test.values()})
    columns = [
        Column("setting", rows, align="left"),
        Column("dev F1", [Summary(dev[row]).text() if row in dev else "-" for row in rows]),
        Column("test F1", [Summary(test[row]).text() for row in rows]),
        Column("Δ test vs jt", ["" if reference is None or row == REFERENCE else f"{Summary(test[row]).mean - reference:+.2f}"
                                for row in rows]),
    ]
    seeds_text = "-".join(str(n) for n in (seeds[0], seeds[-1])) if len(seeds) > 1 else str(seeds[0])
    legend = f"F1 in percent, mean ± std over {seeds_text} runs (seeds); test F1 at the best dev epoch"
    return render_table(columns, width=width) + legend + "\n"


def values_by_setting(tracker, metric: str) -> dict[str, tuple[float, ...]]:
    """Per setting, the completed runs' ``metric`` in seed order."""
    from metaxl_tune.results.report_data import collect

    data = collect(tracker, metric=metric)
    return {setting: tuple(value for target in data.targets for value in data.values(setting, target))
            for setting in data.settings}


def run_comparison(tracker, winner_run_id: str, *, seeds: int, uri: str, storage: str, address: str | None,
                   gpus_per_trial: float | None, cpus_per_trial: float, log=print) -> tuple[str, str]:
    """Run the comparison for a finished search's incumbent config (``winner_run_id``: one of its
    trials; the seeds are the grid's, 1..N); (its ablation name, the table)."""
    import time

    from metaxl_tune.results.ranking import trial_config
    from metaxl_tune.search.driver.ablate import AblationOptions, rerun_study
    from metaxl_tune.search.driver.generated_study import run_generated_ablation
    from metaxl_tune.results.tracking import Tracker

    winner = trial_config(tracker, winner_run_id)
    name = derived_name(tracker.search_name, f"-compare-{time.strftime('%Y%m%d-%H%M%S')}")
    study = rerun_study(comparison_configs(winner), Path(storage) / f"{name}.study.yaml",
                        origin=f"target-only and JT against the incumbent config of search {tracker.search_name}")
    options = AblationOptions(
        name=name, study=str(study), targets=[winner.target], seeds=seeds, base={"task": winner.task},
        address=address, storage=storage, tracking_uri=uri, gpus_per_trial=gpus_per_trial, cpus_per_trial=cpus_per_trial,
    )
    run_generated_ablation(options, study, what="comparison", log=log)
    compared = Tracker(uri, name)
    table = comparison_table(values_by_setting(compared, "best_dev_f1"), values_by_setting(compared, "best_test_f1"))
    return name, table
