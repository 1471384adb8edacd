"""`best`'s view of ranked configs: one row per config, in an 80-column terminal.

The table holds what ranks a config and what it is: rank, seeds, mean ± standard error of the
ranking metric, test F1 at the best dev epoch (mean over seeds) and every searched value. The
config ids and the trials behind each row (with their seeds) follow it as wrapped lines, since
a config with four seeds would need a column wider than the rest of the table:

                best_dev_f1   test  meta_  rtn_
    #   seeds     mean ± se     F1  lr     bottleneck
    -  ------  ------------  -----  -----  ----------
    1       3  32.00 ± 1.15  33.00  1e-4   8
    4  1 seed         36.00  37.00  2e-3   32

    config ids and the trials behind each row (their seeds):
    1  126db67a21c9  trials 00000 (seed 11), 00005 (seed 12), 00009 (seed 13)
"""

from __future__ import annotations

import statistics
import textwrap

from metaxl_tune.common.terminal import Column, render_table, short_ids, terminal_width
from metaxl_tune.results.config_ranking import ConfigRow, RankedConfigs
from metaxl_tune.results.ranking import format_value, mixture_weights


def seeds_cell(row: ConfigRow) -> str:
    # The one-seed mark is in the cell itself: a row that reads "1" beside "3" is easily missed.
    return "1 seed" if row.seeds == 1 else str(row.seeds)


def best_columns(ranked: RankedConfigs, rows: list[ConfigRow]) -> list[Column]:
    """Rank, seeds, the score and every searched parameter are always shown; when the terminal is
    narrow test F1 goes first. A column added later takes a ``keep`` between these."""
    return [
        Column("#", [str(rank) for rank in range(1, len(rows) + 1)]),
        Column("seeds", [seeds_cell(row) for row in rows]),
        # "mean ± se" only over means: a column of one-seed scores is as narrow as a score, and the
        # header would wrap to five lines.
        Column(f"{ranked.metric} mean ± se" if any(row.seeds > 1 for row in rows) else ranked.metric,
               [row.score_text() for row in rows]),
        Column("test F1", [_f1(row.mean_of("best_test_f1")) for row in rows], keep=30),
        *(Column(key, [format_value(row.values.get(key, "")) for row in rows], align="left") for key in ranked.searched),
        # Peak device memory of a trial's last epoch (CUDA max allocated, peak RSS on CPU), the
        # highest of the config's seeds: what --gpus-per-trial 0.5 has to fit.
        *([Column("peak MiB", [_mib(row) for row in rows], keep=15)] if any(_mib(row) for row in rows) else []),
        *([Column("RTN mix", [_mix(row) for row in rows], align="left", keep=25)] if any(_mix(row) for row in rows) else []),
    ]


def best_table(ranked: RankedConfigs, top: int, *, width: int | None = None, wide: bool = False) -> str:
    """The table, the trials behind each row, and the ranking rule; every line fits ``width``."""
    width = terminal_width() if width is None else width
    rows = list(ranked.rows[:top])
    table = render_table(best_columns(ranked, rows), width=width, wide=wide)
    ids = short_ids([trial for row in ranked.rows for trial in row.trial_ids])
    short = dict(zip([trial for row in ranked.rows for trial in row.trial_ids], ids))
    behind = []
    for rank, row in enumerate(rows, start=1):
        trials = ", ".join(short[run.trial_id] + (f" (seed {run.seed})" if run.seed else "") for run in row.runs)
        head = f"{rank:>{len(str(len(rows)))}}  {row.config_id}  "
        behind.append(textwrap.fill(f"{head}trials {trials}", width=width, subsequent_indent=" " * len(head),
                                    break_long_words=False, break_on_hyphens=False))
    rule = textwrap.fill(ranked.rule(), width=width)
    return f"{table}\nconfig ids and the trials behind each row (their seeds):\n" + "\n".join(behind) + f"\n{rule}\n"


def _f1(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def _mib(row: ConfigRow) -> str:
    peaks = [run.metrics["peak_memory_mib"] for run in row.runs if "peak_memory_mib" in run.metrics]
    return str(round(max(peaks))) if peaks else ""


def _mix(row: ConfigRow) -> str:
    """The learned RTN mixture weights, each the mean over the config's seeds."""
    weights: dict[str, list[float]] = {}
    for run in row.runs:
        for key, value in run.metrics.items():
            if key.startswith("rtn_mix_"):
                weights.setdefault(key, []).append(value)
    return mixture_weights({key: statistics.fmean(values) for key, values in weights.items()})
