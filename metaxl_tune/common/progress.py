"""Progress of long work: a live bar where people watch, plain lines where output is kept.

A tqdm bar redraws itself with carriage returns. On a terminal that is one line that moves; in
a pipe, a log file or a batch job's output it is hundreds of lines, one per redraw (building
tiny-pretrained filled the demo's log and every piped search with them). So the bar is drawn
only where the stream is a terminal; elsewhere the work says ``DESC: k/N`` at each quarter
(``quarters=True``), or nothing where other lines already follow it (a run's per-epoch lines).
"""

from __future__ import annotations

import sys
from typing import Any, Iterable, Iterator, TextIO

QUARTERS = 4


class _Quarters:
    """Iterates ``iterable`` and writes one line at each quarter of ``total``."""

    def __init__(self, iterable: Iterable, total: int, desc: str, stream: TextIO | None, unit: str):
        self._iterable = iterable
        self._total = total
        self._desc = desc
        self._stream = stream
        self._unit = unit
        self._postfix = ""
        self._marks = sorted({max(1, total * k // QUARTERS) for k in range(1, QUARTERS + 1)}) if total > 0 else []

    def set_postfix(self, **values: Any) -> None:
        self._postfix = ", ".join(f"{key}={value}" for key, value in values.items())

    def __iter__(self) -> Iterator:
        done = 0
        for item in self._iterable:
            yield item
            done += 1
            if self._stream is not None and self._marks and done == self._marks[0]:
                self._marks.pop(0)
                extra = f" ({self._postfix})" if self._postfix else ""
                print(f"{self._desc}: {done}/{self._total} {self._unit}s{extra}", file=self._stream, flush=True)


def progress(iterable: Iterable, *, total: int, desc: str, unit: str = "step", enabled: bool = True,
             quarters: bool = True, leave: bool = True, stream: TextIO | None = None) -> Any:
    """``iterable`` with its progress shown on ``stream`` (default stderr): a tqdm bar on a
    terminal; elsewhere a line at each quarter, or nothing with ``quarters=False``."""
    stream = sys.stderr if stream is None else stream
    if enabled and _is_terminal(stream):
        from tqdm.auto import tqdm

        return tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave, file=stream)
    return _Quarters(iterable, total, desc, stream if enabled and quarters else None, unit)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
