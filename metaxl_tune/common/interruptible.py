"""Native work that Ctrl-C can stop.

Python runs a signal handler only between bytecodes of the main thread, so Ctrl-C waits for
a long call into native code to return: the `tokenizers` trainer on a large file, or one
tokenizer call over a whole split, holds the main thread for minutes. Such work runs here in
a daemon thread (it releases the GIL) while the main thread waits in short slices, so that
the signal's KeyboardInterrupt is raised in the main thread at once. The abandoned work
writes nothing on its own (callers save its result afterwards) and ends with the process.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Callable, TypeVar

T = TypeVar("T")

WAIT_SLICE_S = 0.1
_interrupted = threading.Event()


def run_interruptibly(work: Callable[[], T], *, name: str = "native-work") -> T:
    """``work()``, in a way a signal to the main thread can interrupt; elsewhere (a Ray
    worker's training thread, which gets no signals) it simply runs."""
    if threading.current_thread() is not threading.main_thread():
        return work()
    outcome: dict[str, object] = {}

    def target() -> None:
        try:
            outcome["value"] = work()
        except BaseException as error:  # noqa: BLE001 - re-raised in the caller's thread below
            outcome["error"] = error

    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(WAIT_SLICE_S)
    except KeyboardInterrupt:
        _interrupted.set()
        raise
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]


def nothing_left_to_save() -> None:
    """Say that the interrupted command has nothing left to save (it was preparing data), so
    that exit_at_once_if_interrupted may end it at once."""
    _interrupted.set()


def exit_at_once_if_interrupted(code: int) -> None:
    """Exit with ``code`` without Python's finalization when a signal interrupted work run here.

    That work wrote nothing (its callers save results only once it returns), and the exit was
    already answered on one line; the interpreter's closing garbage collection (of torch,
    transformers and their caches) would hold the exit for seconds more on a busy machine,
    while abandoned native threads keep the cores busy."""
    if _interrupted.is_set():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
