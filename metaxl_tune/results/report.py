"""Paper-style tables from a finished ablation (or search): settings × targets, mean ± std over seeds.

Reads the tracking store alone (report_data.py collects the cells). Each cell shows the mean
and sample std over seeds of one metric (default ``best_test_f1``, the number the paper
reports); rows also get an ``avg`` over targets and, when a row named ``jt`` exists, the
difference to it in points (paper Tables 2, 4, 5, 6). Rendered as Markdown, LaTeX or CSV, and
plotted.

    data = collect(Tracker(uri, "methods-tk"))
    print(to_markdown(data))
    plot(data, Path("methods-tk.png"))

The names report_data.py defines (``collect``, ``ReportData``, ``Cell``, ``Cost``, the tags) are
still importable from here.
"""

from __future__ import annotations

import csv
import io
import statistics
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from metaxl_tune.results.ranking import ResultsError, metric_mode
from metaxl_tune.results.report_data import (  # noqa: F401 - the tags and collect: re-exported, their old home
    DEVICE_TAG, KIND_TAG, SETTING_TAG, SETTINGS_ORDER_TAG, SHORT_NAMES, STUDY_TAG, TARGETS_ORDER_TAG, TARGETS_TAG,
    Cell, Cost, ReportData, collect,
)
from metaxl_tune.results.tracking import Tracker

REFERENCE = "jt"
ARTIFACT_DIR = "report"
FORMATS = ("md", "latex", "csv")


# ---- table ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    setting: str
    cells: tuple[Cell | None, ...]  # one per target
    avg: float | None  # mean over targets of the cell means; None when a target is missing
    deltas: tuple[float | None, ...] = ()  # per target, then avg; empty without a reference row

    def mean(self, column: int) -> float | None:
        """Column ``column`` of the table: a target's mean, or avg at ``len(cells)``."""
        if column == len(self.cells):
            return self.avg
        cell = self.cells[column]
        return cell.mean if cell else None


@dataclass(frozen=True)
class Table:
    """What every renderer draws: rows of cells, the avg column, Δ vs the reference, best marks."""

    title: str
    metric: str
    targets: tuple[str, ...]
    rows: tuple[Row, ...]
    reference: str | None  # the Δ row ('jt') when present
    best: frozenset[tuple[int, int]]  # (row, column) marked best; column len(targets) is avg
    cost: Cost
    seeds: tuple[int, int]  # fewest and most seeds in a cell
    short_names: tuple[str, ...] = ()

    @property
    def columns(self) -> tuple[str, ...]:
        return (*self.targets, "avg")

    def seeds_text(self) -> str:
        low, high = self.seeds
        return f"n = {low}" if low == high else f"n = {low}-{high}"


def build_table(data: ReportData) -> Table:
    rows = []
    for setting in data.settings:
        cells = tuple(data.cells.get((setting, target)) for target in data.targets)
        avg = statistics.fmean(cell.mean for cell in cells) if all(cells) else None
        rows.append(Row(setting, cells, avg))
    reference = next((row for row in rows if row.setting == REFERENCE), None)
    if reference is not None:
        width = len(data.targets) + 1
        rows = [
            Row(row.setting, row.cells, row.avg, tuple(_minus(row.mean(c), reference.mean(c)) for c in range(width)))
            for row in rows
        ]
    pick = max if metric_mode(data.metric) == "max" else min
    best = set()
    for column in range(len(data.targets) + 1):
        present = [(index, row.mean(column)) for index, row in enumerate(rows) if row.mean(column) is not None]
        if len(present) < 2:
            continue  # one row is trivially best: no mark
        top = pick(value for _, value in present)
        best.update((index, column) for index, value in present if value == top)
    title = data.name + (f" ({data.study})" if data.study else "")
    counts = [cell.n for cell in data.cells.values()]
    return Table(
        title=title, metric=data.metric, targets=tuple(data.targets), rows=tuple(rows),
        reference=reference.setting if reference else None, best=frozenset(best), cost=data.cost,
        seeds=(min(counts), max(counts)), short_names=data.short_names,
    )


def _minus(value: float | None, reference: float | None) -> float | None:
    return None if value is None or reference is None else value - reference


def _table(source: Table | ReportData) -> Table:
    return source if isinstance(source, Table) else build_table(source)


def _number(value: float) -> str:
    text = f"{value:.2f}"
    return "0.00" if text == "-0.00" else text


def _delta(value: float) -> str:
    text = f"{value:+.2f}"
    return "+0.00" if text == "-0.00" else text


def _legend(table: Table, *, delta_word: str) -> str:
    spread = f"mean ± std of {table.metric} over seeds ({table.seeds_text()})"
    if table.seeds == (1, 1):
        spread = f"{table.metric}, one seed per cell"
    parts = [spread, "avg = mean over targets"]
    if table.reference:
        parts.append(f"{delta_word} vs {table.reference} in parentheses")
    parts.append("best per column in bold")
    if table.short_names:
        parts.append(", ".join(f"{SHORT_NAMES[key]} = {key}" for key in table.short_names))
    return "; ".join(parts)


# ---- renderers -----------------------------------------------------------------------------


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def to_markdown(source: Table | ReportData) -> str:
    table = _table(source)
    lines = [
        f"**{_md_escape(table.title)}**",
        "",
        "| setting | " + " | ".join(_md_escape(column) for column in table.columns) + " |",
        "|:--|" + "--:|" * len(table.columns),
    ]
    for index, row in enumerate(table.rows):
        cells = [_md_escape(row.setting)]
        for column in range(len(table.columns)):
            cells.append(_cell_text(table, index, column, bold=lambda text: f"**{text}**", pm="±", delta=_delta))
        lines.append("| " + " | ".join(cells) + " |")
    legend = _legend(table, delta_word="Δ")
    lines += ["", legend[0].upper() + legend[1:] + ".", "", table.cost.line() + ".", ""]
    return "\n".join(lines)


def _cell_text(table: Table, index: int, column: int, *, bold, pm: str, delta) -> str:
    row = table.rows[index]
    mean = row.mean(column)
    if mean is None:
        return "–" if pm == "±" else "--"
    text = _number(mean)
    if (index, column) in table.best:
        text = bold(text)
    if column < len(row.cells) and row.cells[column].std is not None:
        text += f" {pm} {_number(row.cells[column].std)}"
    if row.deltas and row.setting != table.reference and row.deltas[column] is not None:
        text += f" ({delta(row.deltas[column])})"
    return text


_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIALS.get(char, char) for char in text)


def to_latex(source: Table | ReportData) -> str:
    """A booktabs ``table`` environment; needs ``\\usepackage{booktabs}``."""
    table = _table(source)
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        r"\begin{tabular}{l" + "r" * len(table.columns) + "}",
        r"\toprule",
        "Setting & " + " & ".join(latex_escape(column) for column in table.columns) + r" \\",
        r"\midrule",
    ]
    for index, row in enumerate(table.rows):
        cells = [latex_escape(row.setting)]
        for column in range(len(table.columns)):
            cells.append(_cell_text(
                table, index, column, bold=lambda text: rf"\textbf{{{text}}}", pm=r"$\pm$",
                delta=lambda value: f"${_delta(value)}$",
            ))
        lines.append(" & ".join(cells) + r" \\")
    legend = latex_escape(_legend(table, delta_word="DELTA")).replace("±", r"$\pm$").replace("DELTA", r"$\Delta$")
    lines += [
        r"\bottomrule",
        r"\end{tabular}",
        rf"\caption{{{latex_escape(table.title)}: {legend}.}}",
        r"\par\smallskip\footnotesize " + latex_escape(table.cost.line()) + ".",
        r"\end{table}",
        "",
    ]
    return "\n".join(lines)


def to_csv(source: Table | ReportData) -> str:
    """One row per setting: per target mean, std, n; avg; Δ columns when a jt row exists.
    Best means carry a trailing ``*`` (parse with ``float(text.rstrip('*'))``)."""
    table = _table(source)
    header = ["setting"]
    for target in table.targets:
        header += [f"{target}_mean", f"{target}_std", f"{target}_n"]
    header.append("avg")
    if table.reference:
        header += [f"delta_{column}" for column in table.columns]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)

    def mean_text(index: int, column: int) -> str:
        mean = table.rows[index].mean(column)
        if mean is None:
            return ""
        return f"{mean:.4f}" + ("*" if (index, column) in table.best else "")

    for index, row in enumerate(table.rows):
        line = [row.setting]
        for column, cell in enumerate(row.cells):
            std = cell.std if cell else None
            line += [mean_text(index, column), "" if std is None else f"{std:.4f}", str(cell.n if cell else 0)]
        line.append(mean_text(index, len(row.cells)))
        if table.reference:
            line += ["" if value is None else f"{value:+.4f}" for value in row.deltas]
        writer.writerow(line)
    return buffer.getvalue()


RENDERERS = {"md": to_markdown, "latex": to_latex, "csv": to_csv}
SUFFIXES = {"md": ".md", "latex": ".tex", "csv": ".csv"}


def render(source: Table | ReportData, fmt: str) -> str:
    if fmt not in RENDERERS:
        raise ResultsError(f"--format {fmt}: use {', '.join(FORMATS)}")
    return RENDERERS[fmt](source)


# ---- plot and attachments ------------------------------------------------------------------


def plot(source: Table | ReportData, path: Path) -> Path:
    """PNG bar chart: a group per setting, a bar per target and avg, error bars = std over seeds."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    table = _table(source)
    columns = table.columns
    width = 0.8 / len(columns)
    figure = Figure(figsize=(max(4.0, 1.2 + len(table.rows) * (0.35 * len(columns) + 0.5)), 3.6), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for column, label in enumerate(columns):
        xs, heights, errors = [], [], []
        for index, row in enumerate(table.rows):
            mean = row.mean(column)
            if mean is None:
                continue
            cell = row.cells[column] if column < len(row.cells) else None
            xs.append(index + (column - (len(columns) - 1) / 2) * width)
            heights.append(mean)
            errors.append(cell.std if cell is not None and cell.std is not None else float("nan"))  # nan: no bar
        axes.bar(xs, heights, width, yerr=errors, capsize=2, label=label,
                 hatch="//" if label == "avg" else None, edgecolor="black", linewidth=0.4)
    axes.set_xticks(range(len(table.rows)), [row.setting for row in table.rows])
    axes.set_ylabel(table.metric)
    axes.set_title(table.title)
    axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    axes.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _replace_atomically(path, lambda partial: figure.savefig(partial, format="png", metadata={"Software": None}))
    return path


def _replace_atomically(path: Path, write) -> None:
    """``write(partial)`` then rename over ``path``: an interrupt (Ctrl-C) leaves the old file or
    the new one, never half of one, and no partial file behind."""
    partial = path.with_name(f".{path.name}.partial")
    try:
        write(partial)
        partial.replace(path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def attach(tracker: Tracker, parent_run_id: str, files: Iterable[Path]) -> list[str]:
    """Log the report files to the search's parent run under ``report/``; returns the artifact paths."""
    files = [Path(path) for path in files]
    tracker.log_files(parent_run_id, files, ARTIFACT_DIR)
    return [f"{ARTIFACT_DIR}/{path.name}" for path in files]


@dataclass
class Report:
    """What `metaxl-tune report` produced."""

    data: ReportData
    table: Table
    text: str
    plot_path: Path
    attached: list[str] = field(default_factory=list)

    @property
    def cost(self) -> Cost:
        return self.data.cost


def make_report(
    tracker: Tracker,
    fmt: str = "md",
    *,
    metric: str = "best_test_f1",
    output: Path | None = None,
    plot_path: Path | None = None,
    attach_to_run: bool = True,
) -> Report:
    """Collect, render (written to ``output`` when given), plot, and attach both to the parent run.

    The plot goes to ``plot_path``, else next to ``output``, else ``report-NAME.png``.
    """
    if fmt not in RENDERERS:
        raise ResultsError(f"--format {fmt}: use {', '.join(FORMATS)}")
    data = collect(tracker, metric=metric)
    table = build_table(data)
    text = render(table, fmt)
    if plot_path is None:
        plot_path = output.with_suffix(".png") if output is not None else Path(f"report-{data.name}.png")
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        _replace_atomically(output, lambda partial: partial.write_text(text, encoding="utf-8"))
    plot(table, plot_path)
    report = Report(data=data, table=table, text=text, plot_path=plot_path)
    if attach_to_run and data.parent_run_id:
        with tempfile.TemporaryDirectory() as scratch:
            table_file = output
            if table_file is None:
                table_file = Path(scratch) / f"report-{data.name}{SUFFIXES[fmt]}"
                table_file.write_text(text, encoding="utf-8")
            report.attached = attach(tracker, data.parent_run_id, [table_file, plot_path])
    return report
