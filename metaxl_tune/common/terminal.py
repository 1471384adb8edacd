"""Plain-terminal tables that fit the window without cutting a number.

Rich shrinks every column of a table wider than the terminal and cuts its cells ("0.000…"),
which hides exactly the numbers a user came for. Here cells are never cut: headers wrap at
``_``/space boundaries, and whole columns are dropped instead, least important first (a
column's ``keep``; ``keep=None`` columns are always shown), until the table fits. ``wide=True``
shows every column whatever the width.

    columns = [Column("#", ["1", "2"]), Column("outcome", ["completed", "pruned"], keep=1)]
    print(render_table(columns, width=80))
"""

from __future__ import annotations

import ast
import math
import re
import shutil
from dataclasses import dataclass
from typing import Any, Sequence

GAP = "  "
_PLACEMENT_NAMES = {"0": "emb"}


def terminal_width(default: int = 80) -> int:
    """The terminal's width ($COLUMNS first, as shells and CliRunner set it)."""
    return shutil.get_terminal_size((default, 24)).columns


def short_number(value: float) -> str:
    """Integers as integers, small or large floats in short scientific form (``1.2e-4``),
    others with three significant digits."""
    if isinstance(value, bool):
        return str(value).lower()
    if math.isnan(value) or math.isinf(value):
        return str(value)
    if float(value).is_integer() and abs(value) < 1e6:
        return str(int(value))
    if value != 0 and (abs(value) < 1e-2 or abs(value) >= 1e5):
        mantissa, exponent = f"{value:.1e}".split("e")
        mantissa = mantissa.rstrip("0").rstrip(".")
        return f"{mantissa}e{int(exponent)}"
    return f"{value:.3g}"


def placement_text(value: Any) -> str | None:
    """``[0, 'last']`` (as MLflow stores RunConfig.rtn_layers) -> ``emb+last``; None if not a list."""
    if isinstance(value, str):
        if not value.startswith("["):
            return None
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return None
    if not isinstance(value, (list, tuple)) or not value:
        return None
    return "+".join(_PLACEMENT_NAMES.get(str(part), str(part)) for part in value)


def display_value(value: Any) -> str:
    """A param or metric as a short cell: numbers short, placements as labels, booleans lower-case."""
    if isinstance(value, bool) or value in ("True", "False"):
        return str(value).lower()
    placement = placement_text(value) if isinstance(value, (str, list, tuple)) else None
    if placement is not None:
        return placement
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return short_number(number)


def short_ids(ids: Sequence[str]) -> list[str]:
    """Trial ids without the prefix they all share up to an ``_`` (Tune's ``abc12_00003`` -> ``00003``)."""
    if len(ids) < 2:
        return [identifier.rsplit("_", 1)[-1] for identifier in ids]
    prefix = ids[0]
    for identifier in ids[1:]:
        while not identifier.startswith(prefix):
            prefix = prefix[:-1]
    cut = prefix.rfind("_") + 1
    return [identifier[cut:] or identifier for identifier in ids]


@dataclass
class Column:
    header: str
    cells: list[str]
    align: str = "right"
    """right (numbers) or left (words)."""
    keep: int | None = None
    """Importance when the table is too wide: lower is dropped first; None is never dropped."""

    @property
    def width(self) -> int:
        return max([len(line) for line in self.header_lines()] + [len(cell) for cell in self.cells])

    def header_lines(self, width: int | None = None) -> list[str]:
        """The header wrapped at ``_`` or space boundaries, no narrower than its widest cell needs."""
        pieces = [piece for piece in re.findall(r"[^_ ]+[_ ]?", self.header)] or [self.header]
        target = max([len(cell) for cell in self.cells] + [max(len(p.rstrip()) for p in pieces)]) if width is None else width
        lines: list[str] = []
        for piece in pieces:
            if lines and len(lines[-1] + piece.rstrip()) <= target:
                lines[-1] += piece
            else:
                lines.append(piece)
        return [line.rstrip(" ") for line in lines]


def table_width(columns: Sequence[Column]) -> int:
    return sum(column.width for column in columns) + len(GAP) * (len(columns) - 1)


def fit_columns(columns: Sequence[Column], width: int, *, wide: bool = False) -> list[Column]:
    """The columns to show: all with ``wide``, else drop the least important until they fit."""
    shown = list(columns)
    if wide:
        return shown
    while table_width(shown) > width:
        droppable = [column for column in shown if column.keep is not None]
        if not droppable:
            break  # every remaining column is essential: a long line beats a cut number
        # The least important goes first; among equals, the rightmost.
        victim = min(reversed(droppable), key=lambda column: column.keep)
        shown.remove(victim)
    return shown


def render_table(columns: Sequence[Column], *, width: int | None = None, wide: bool = False) -> str:
    """The table as text lines: wrapped headers, a rule, then the rows (no cell is ever cut)."""
    shown = fit_columns(columns, terminal_width() if width is None else width, wide=wide)
    widths = [column.width for column in shown]
    headers = [column.header_lines(width) for column, width in zip(shown, widths)]
    depth = max(len(lines) for lines in headers)
    # Headers sit on the bottom line of the header block, like a printed table's.
    headers = [[""] * (depth - len(lines)) + lines for lines in headers]

    def line(cells: Sequence[str]) -> str:
        parts = [
            cell.rjust(width) if column.align == "right" else cell.ljust(width)
            for cell, width, column in zip(cells, widths, shown)
        ]
        return GAP.join(parts).rstrip()

    out = [line([lines[row] for lines in headers]) for row in range(depth)]
    out.append(GAP.join("-" * width for width in widths))
    rows = max((len(column.cells) for column in shown), default=0)
    out += [line([column.cells[row] if row < len(column.cells) else "" for column in shown]) for row in range(rows)]
    hidden = [column.header for column in columns if column not in shown]
    if hidden:
        out.append(f"(not shown at this width: {', '.join(hidden)}; --wide shows every column)")
    return "\n".join(out) + "\n"
