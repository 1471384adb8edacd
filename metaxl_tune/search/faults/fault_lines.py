"""The one line a search prints when a trial fails, is retried, or is resumed by ``--resume``:
what happened, what was kept, what happens next. Tune's own account of the same events (a
traceback, the raylet's paragraph) is shown only with ``--verbose`` (quiet_output.py).
``error_summary`` makes an MLflow client error (a paragraph ending in urllib3's cause) into a
few whole words for such a line."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path
from typing import Any

from metaxl_tune.search.faults.ending import error_reason

PROGRESS_FILE = "trial_progress.json"
"""= trainable.PROGRESS_FILE (not imported: the trainable loads torch): the epoch a checkpoint holds."""


def checkpoint_epoch(trial: Any) -> int | None:
    """The epoch of the trial's latest resume checkpoint: 0 without one, None if unreadable."""
    checkpoint = trial.checkpoint
    if checkpoint is None:
        return 0
    try:
        return int(json.loads((Path(checkpoint.path) / PROGRESS_FILE).read_text())["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


_LOST_WORKER = re.compile(r"The actor (?:is dead|died) because ([^.\n]+)")
_EXIT_DETAIL = re.compile(r"Worker exit detail: ([^.\n]+)")


def failure_reason(trial: Any) -> str:
    """Why a trial failed, short: for a lost worker or node Ray's cause (its error has no
    ``SomeError:`` line), else the error's last line."""
    try:
        text = Path(trial.error_file).read_text(errors="replace") if trial.error_file else ""
    except OSError:
        text = ""
    # error.txt gathers every failure of the trial: the last one is this one.
    text = text.rsplit("Failure # ", 1)[-1]
    lost = _LOST_WORKER.search(text)
    if lost is None:
        return error_reason(text) if text.strip() else "error"
    detail = _EXIT_DETAIL.search(text)
    return f"worker lost: {lost.group(1).strip()}" + (f" ({detail.group(1).strip()[:120]})" if detail else "")


def _last_result(trial: Any) -> dict:
    # The stored result: Trial.last_result would ask a just-started actor for its defaults.
    return trial.run_metadata.last_result or {}


def _reached(trial: Any) -> str:
    epoch = _last_result(trial).get("epoch")
    return f"after epoch {epoch}" if epoch else "before its first epoch"


def _restart(trial: Any) -> str:
    epoch = checkpoint_epoch(trial)
    if epoch is None:
        return "it restarts from its last checkpoint"
    if epoch == 0:
        return "no checkpoint yet, so it starts again from epoch 1"
    return f"it restarts from its checkpoint of epoch {epoch}"


def _redone(trial: Any) -> str:
    reached, kept = _last_result(trial).get("epoch"), checkpoint_epoch(trial)
    if reached and kept is not None and reached > kept:
        return "; redone epochs are logged once, their time is counted"
    return ""


def retry_line(trial: Any, reason: str) -> str:
    """A trial failed and Tune retries it (a lost worker or node, an error)."""
    retries = trial.run_metadata.num_failures
    limit = f" of {trial.max_failures}" if getattr(trial, "max_failures", 0) > 0 else ""
    return (f"[search] trial {trial.trial_id} failed {_reached(trial)} ({reason}); {_restart(trial)} "
            f"(retry {retries}{limit}){_redone(trial)}")


def failed_line(trial: Any, reason: str) -> str:
    """A trial failed for good: its retries are used up."""
    retries = trial.run_metadata.num_failures - 1
    spent = f" after {retries} {'retry' if retries == 1 else 'retries'}" if retries > 0 else ""
    return f"[search] trial {trial.trial_id} failed {_reached(trial)}{spent} ({reason}); the search goes on"


def resumed_line(trial: Any) -> str | None:
    """A trial that a new driver (``--resume``) starts again; None for a trial's first start."""
    if not _last_result(trial).get("epoch"):
        return None
    return f"[search] trial {trial.trial_id} resumes, stopped {_reached(trial)}: {_restart(trial)}{_redone(trial)}"


# MLflow's HTTP client wraps urllib3's errors: "API request to URL failed with exception
# HTTPConnectionPool(host=..., port=...): Max retries exceeded with url: PATH (Caused by ...)".
# A line cut at N characters ends inside the pool's repr, before the cause.
_TOO_MANY = re.compile(r"too many (\d{3}) error responses")
_ERROR_CODE = re.compile(r"failed with error code (\d{3}) != 200")
SERVER_CLOSED = "the server closed the connection during the request"
_CONNECTION_CAUSES = (
    ("Connection refused", "connection refused"),
    ("Connection reset by peer", SERVER_CLOSED),
    ("Connection aborted", SERVER_CLOSED),
    ("RemoteDisconnected", SERVER_CLOSED),
    ("Read timed out", "the server did not answer in time"),
    ("timed out", "the server did not answer in time"),
    ("Name or service not known", "unknown host"),
)
SUMMARY_WIDTH = 160


def http_status(text: str) -> int | None:
    """The HTTP status an MLflow client error carries (its own or urllib3's retries), if any."""
    match = _TOO_MANY.search(text) or _ERROR_CODE.search(text)
    return int(match.group(1)) if match else None


def error_summary(error: BaseException, width: int = SUMMARY_WIDTH) -> str:
    """An error as a few whole words for one line: the HTTP status or connection fault an MLflow
    call met, else the error's first line shortened at a word boundary (never cut mid-word)."""
    text = str(error).strip()
    status = http_status(text)
    if status is not None:
        return f"HTTP {status}"
    if "HTTPConnectionPool" in text or "HTTPSConnectionPool" in text or "Max retries exceeded" in text:
        for needle, said in _CONNECTION_CAUSES:
            if needle in text:
                return said
    first = text.splitlines()[0] if text else type(error).__name__
    return textwrap.shorten(first, width=width, placeholder=" ...")
