"""How many bytes a call reads, from the kernel's own count (Linux ``/proc/self/io``): a test
that a reader stops early checks what it read, not how long it took."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable


def bytes_read() -> int:
    """Bytes this process has read through read() and similar calls so far (``rchar``)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise RuntimeError("no rchar in /proc/self/io")


def reading(call: Callable[[], Any]) -> tuple[BaseException | None, int]:
    """The exception ``call`` raised (None if it returned) and the bytes read meanwhile."""
    before = bytes_read()
    try:
        call()
    except BaseException as error:  # noqa: BLE001 - handed back to the test to check
        return error, bytes_read() - before
    return None, bytes_read() - before
