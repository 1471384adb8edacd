"""Artifact uploads that never change a record.

A search uploads files next to its records: each trial's ``config.yaml`` and best-dev weights,
the search's plots. The tracking server may take the records and refuse the files: its
artifact store is full, read-only or over quota, while its database answers. Such a failure
must not touch what the records say: the trial keeps its outcome (a FINISHED trial stays
FINISHED), its metrics and tags, and its files stay where the search wrote them (the trial's
checkpoint in the search's storage). ``metaxl-tune sync`` uploads them later.

The failure is said once per search and driver, on one whole line that names the cause, what
is kept and what to run; later failures of the same kind add nothing new to say. An upload
that fails because the server is away entirely is not such a failure: it is raised again, so
the tracking queue holds it with the other calls and writes it when the server is back.

A server that proxies its artifact store answers a failed write with a bare HTTP 500 (or
closes the connection mid-upload), whatever the cause; a local store raises the OS error. The
line says what can be known: "no space left on the artifact store" for ``ENOSPC``, and for a
server's 500 the two causes it stands for in practice (a full or an unwritable store).
"""

from __future__ import annotations

import errno
import threading
from pathlib import Path
from typing import Callable, Iterable

from metaxl_tune.search.faults.fault_lines import SERVER_CLOSED, error_summary, http_status

DRIVER_SAID: set[tuple[str, str]] = set()
"""(tracking URI, search) pairs whose failed upload this driver process has said already: the
trial callback (which Tune restores from a snapshot on --resume) and the driver's end of search
(the plots) share it without holding a reference to each other."""
_SAID_LOCK = threading.Lock()

_OS_CAUSES = {
    errno.ENOSPC: "no space left on the artifact store",
    errno.EDQUOT: "the artifact store's disk quota is used up",
    errno.EROFS: "the artifact store is read-only",
    errno.EACCES: "the artifact store is not writable (permission denied)",
    errno.EPERM: "the artifact store is not writable (operation not permitted)",
}


def format_size(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024:
            break
    return f"{value:.1f} {unit}"


def files_size(paths: Iterable[Path]) -> int:
    total = 0
    for path in paths:
        try:
            total += Path(path).stat().st_size
        except OSError:
            continue
    return total


def _os_errno(error: BaseException) -> int | None:
    """The errno of the OS error behind ``error`` (a local artifact store), if any."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _OS_CAUSES:
            return current.errno
        current = current.__cause__ or current.__context__
    return None


def upload_cause(error: BaseException) -> str:
    """Why the artifact store did not take a file, as one clause."""
    code = _os_errno(error)
    if code is not None:
        return _OS_CAUSES[code]
    text = str(error)
    if "No space left on device" in text:
        return "no space left on the artifact store"
    status = http_status(text)
    summary = error_summary(error)
    if status == 413:
        return "the file is larger than the server (or a proxy in front of it) accepts (HTTP 413)"
    if status is not None and status >= 500 or summary == SERVER_CLOSED:
        # The server does not say why; these are the causes of a failed write into its store.
        how = "it closed the connection mid-upload" if summary == SERVER_CLOSED else summary
        return (f"the server could not write it ({how}): no space left on the artifact store, "
                "or the store is not writable")
    return f"the server refused it ({summary})"


class ArtifactUploads:
    """Runs uploads for one search; a failure with the server up is said once and swallowed."""

    def __init__(self, tracker, *, kept_in: str | Path, sync_hint: str, say: Callable[[str], None],
                 said: set[tuple[str, str]] | None = None):
        """``said``: where to note that the line was said (DRIVER_SAID in a search's driver);
        None: this object's own, so each ``sync`` says its own line."""
        self.tracker = tracker
        self.said = said if said is not None else set()
        self.kept_in = str(kept_in)
        self.sync_hint = sync_hint
        self.say = say
        self.failed = 0
        """Uploads this object gave up on (the server was up and refused them)."""

    def upload(self, what: str, size: int, action: Callable[[], object]) -> bool:
        """Run ``action`` (an upload of ``what``, ``size`` bytes). True once it is stored; False
        when the server is up but did not store it. Raises when the server is away."""
        try:
            action()
        except Exception as error:  # noqa: BLE001 - MLflow raises many unrelated types
            if not self.tracker.reachable():
                raise  # not the store's fault: the tracking queue holds the call for later
            self.failed += 1
            self._say_once(what, size, error)
            return False
        return True

    def _say_once(self, what: str, size: int, error: BaseException) -> None:
        key = (self.tracker.tracking_uri, self.tracker.search_name)
        with _SAID_LOCK:
            if key in self.said:
                return
            self.said.add(key)
        self.say(f"warning: MLflow at {self.tracker.tracking_uri} did not store {what} ({format_size(size)}): "
                 f"{upload_cause(error)}; outcomes and metrics are recorded all the same, and the files it did "
                 f"not take stay in {self.kept_in}: make room, then run `{self.sync_hint}` to upload them")
