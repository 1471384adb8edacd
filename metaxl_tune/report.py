"""Paper-style tables from a finished ablation (or search): settings × targets, mean ± std over seeds.

Reads the tracking store alone. Each completed trial run contributes one value of ``metric``
(default ``best_test_f1``: test F1 at the best-dev epoch, the number the paper reports) to the
cell (row = its ``metaxl.setting`` tag, column = its ``target`` param); the cell shows the mean
and sample std over seeds. Rows also get an ``avg`` over targets and, when a row named ``jt``
exists, the difference to it in points (paper Tables 2, 4, 5, 6).

    data = collect(Tracker(uri, "methods-tk"))
    print(to_markdown(data))
    plot(data, Path("methods-tk.png"))

Order: rows follow the parent run's ``metaxl.settings_order`` tag (comma-separated) when set,
else sorted; columns follow ``metaxl.targets_order`` (or ``metaxl.targets``) likewise. Pruned and failed trials are
left out of the table but counted in the cost, which they also spent.
"""

from __future__ import annotations

import csv
import io
import statistics
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from metaxl_tune.results import SEARCHED_TAG, ResultsError, format_value, metric_mode
from metaxl_tune.mlflow_filters import tags_equal
from metaxl_tune.tracking import OUTCOME_TAG, PARENT_TAG, SEARCH_TAG, TRIAL_TAG, Tracker

SETTING_TAG = "metaxl.setting"
SETTINGS_ORDER_TAG = "metaxl.settings_order"
TARGETS_ORDER_TAG = "metaxl.targets_order"
TARGETS_TAG = "metaxl.targets"
STUDY_TAG = "metaxl.study"
KIND_TAG = "metaxl.kind"
DEVICE_TAG = "metaxl.device_type"
REFERENCE = "jt"
ARTIFACT_DIR = "report"
FORMATS = ("md", "latex", "csv")
# Params that are columns or replicates, never part of a fallback row label.
_NOT_A_SETTING = ("target", "seed")
_HOURS = {"cuda": "GPU-hours", "cpu": "CPU-hours"}
# Short names in a plain search's row labels, so a row with every searched parameter fits an
# 80-column terminal; the legend spells out the ones a table uses.
SHORT_NAMES = {"meta_lr": "β", "rtn_bottleneck": "r", "rtn_layers": "at", "rtn_detach_input": "detach",
               "source": "src", "rtn_gate": "gate", "source_size": "n_src"}


# ---- data ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """The per-seed values of one (setting, target), in seed order."""

    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float | None:
        """Sample standard deviation (ddof = 1); None for a single seed."""
        return statistics.stdev(self.values) if len(self.values) > 1 else None


@dataclass(frozen=True)
class Cost:
    """Device time spent by every trial of the search (pruned and failed included)."""

    seconds: dict[str, float]  # device type ('cuda', 'cpu', '?') -> device-seconds
    outcomes: dict[str, int]  # outcome -> trials

    @property
    def trials(self) -> int:
        return sum(self.outcomes.values())

    @property
    def gpu_hours(self) -> float:
        return self.seconds.get("cuda", 0.0) / 3600

    @property
    def cpu_hours(self) -> float:
        return self.seconds.get("cpu", 0.0) / 3600

    def line(self) -> str:
        if not self.seconds:
            spent = "unknown (no trial logged device_seconds)"
        else:
            spent = " + ".join(
                f"{seconds / 3600:.2f} {_HOURS.get(device, 'device-hours')}"
                for device, seconds in sorted(self.seconds.items(), key=lambda item: _device_rank(item[0]))
            )
        counts = ", ".join(f"{count} {outcome}" for outcome, count in sorted(self.outcomes.items()))
        return f"Cost: {spent} over {self.trials} trials ({counts})"


def _device_rank(device: str) -> tuple[int, str]:
    return (list(_HOURS).index(device) if device in _HOURS else len(_HOURS), device)


@dataclass
class ReportData:
    """Completed trials of one search, grouped into cells."""

    name: str
    metric: str
    settings: list[str]
    targets: list[str]
    cells: dict[tuple[str, str], Cell]
    cost: Cost
    parent_run_id: str | None = None
    study: str | None = None
    kind: str | None = None
    short_names: tuple[str, ...] = ()
    """Searched parameters shown under a SHORT_NAMES alias in the row labels."""

    def values(self, setting: str, target: str) -> list[float]:
        cell = self.cells.get((setting, target))
        return list(cell.values) if cell else []


def _ordered(names: Iterable[str], preferred: str) -> list[str]:
    """Names in the order of the comma-separated ``preferred`` list, the others sorted after."""
    names = set(names)
    listed = [name for name in dict.fromkeys(part.strip() for part in preferred.split(",")) if name in names]
    return listed + sorted(names - set(listed))


def _parent(tracker: Tracker):
    query = tags_equal({SEARCH_TAG: tracker.search_name, "metaxl.role": "search"})
    parents = tracker.client.search_runs([tracker.experiment_id], filter_string=query, max_results=1)
    return parents[0] if parents else None


def _seed_key(seed: str) -> tuple[int, float, str]:
    try:
        return (0, float(seed), "")
    except ValueError:
        return (1, 0.0, seed)


def _setting_of(run, searched: Sequence[str]) -> str:
    tags, params = run.data.tags, run.data.params
    if tags.get(SETTING_TAG):
        return tags[SETTING_TAG]
    # A plain search: the row is the searched point, or the trial when nothing was searched.
    label = " ".join(
        f"{SHORT_NAMES.get(key, key)}={format_value(params[key])}"
        for key in searched if key in params and key not in _NOT_A_SETTING
    )
    return label or tags.get(TRIAL_TAG, run.info.run_id[:8])


def collect(tracker: Tracker, *, metric: str = "best_test_f1") -> ReportData:
    """The completed trials of ``tracker.search_name`` grouped by (setting, target).

    Raises ResultsError (one line) when the store, the search, a completed trial or the metric is missing.
    """
    if tracker.client.get_experiment_by_name(tracker.experiment) is None:
        raise ResultsError(f"no searches in {tracker.tracking_uri}; check --tracking-uri (or MLFLOW_TRACKING_URI)")
    name = tracker.search_name
    runs = tracker.trial_runs()
    if not runs:
        raise ResultsError(f"no search named {name} in {tracker.tracking_uri}; check --name and --tracking-uri")

    outcomes: dict[str, int] = {}
    seconds: dict[str, float] = {}
    for run in runs:
        outcome = run.data.tags.get(OUTCOME_TAG, run.info.status.lower())
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        if "device_seconds" in run.data.metrics:
            device = run.data.tags.get(DEVICE_TAG, "?")
            seconds[device] = seconds.get(device, 0.0) + run.data.metrics["device_seconds"]
    cost = Cost(seconds=seconds, outcomes=outcomes)

    completed = [run for run in runs if run.data.tags.get(OUTCOME_TAG) == "completed"]
    if not completed:
        counts = ", ".join(f"{count} {outcome}" for outcome, count in sorted(outcomes.items()))
        raise ResultsError(f"search {name} has no completed trial ({counts}); nothing to report yet")
    measured = [run for run in completed if metric in run.data.metrics]
    if not measured:
        known = sorted({key for run in completed for key in run.data.metrics})
        raise ResultsError(f"--metric {metric}: no completed trial of {name} logged it; logged: {', '.join(known)}")

    parent = _parent(tracker)
    parent_tags = dict(parent.data.tags) if parent is not None else {}
    searched = [key for key in parent_tags.get(SEARCHED_TAG, "").split(",") if key]
    grouped: dict[tuple[str, str], list[tuple[str, float]]] = {}
    for run in measured:
        key = (_setting_of(run, searched), run.data.params.get("target", "-"))
        grouped.setdefault(key, []).append((run.data.params.get("seed", ""), run.data.metrics[metric]))
    cells = {
        key: Cell(tuple(value for _, value in sorted(pairs, key=lambda pair: (_seed_key(pair[0]), pair[1]))))
        for key, pairs in grouped.items()
    }
    parent_id = parent.info.run_id if parent is not None else measured[0].data.tags.get(PARENT_TAG)
    return ReportData(
        name=name,
        metric=metric,
        settings=_ordered((setting for setting, _ in cells), parent_tags.get(SETTINGS_ORDER_TAG, "")),
        targets=_ordered(
            (target for _, target in cells),
            parent_tags.get(TARGETS_ORDER_TAG) or parent_tags.get(TARGETS_TAG, ""),  # ablate's --targets order
        ),
        cells=cells,
        cost=cost,
        parent_run_id=parent_id,
        study=parent_tags.get(STUDY_TAG),
        kind=parent_tags.get(KIND_TAG),
        short_names=tuple(key for key in searched if key in SHORT_NAMES and key not in _NOT_A_SETTING
                          and not any(run.data.tags.get(SETTING_TAG) for run in measured)),
    )


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
