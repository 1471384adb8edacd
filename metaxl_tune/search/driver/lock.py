"""One driver per search: an exclusive OS file lock on ``<storage>/<name>.lock``.

The lock is taken before anything of the search is created (its folder, its MLflow runs, Ray)
and held until the driver has shut Ray down and closed its runs; a second ``search`` with that
name, or a ``--resume`` while the first still runs, is refused with one line naming the holder.

``flock`` because the kernel drops it when its holder dies however it dies (SIGKILL, the OOM
killer, a lost node once its NFS lease expires): a lock file whose lock is free was left by a
driver that is gone, and is taken over. On Linux, flock on NFS is carried out as an NFS
byte-range lock, so drivers on two nodes of a shared ``--storage`` exclude each other too. The
file holds who has it (host, pid, command, start time) for the refusal line; a driver that
ends removes it, so a file left behind always means a driver that did not end. A driver that
ends without unwinding (search/faults/ray_loss.py: it lost Ray's own processes in a stop) releases
it through the handle ``driver_lock`` yields; one that Ray ended outright has it removed by its
supervisor (``release_left_lock``, common/supervision.py), whose pid the file names.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

from metaxl_tune.common.supervision import user_pid
from metaxl_tune.search.faults.interrupt import resume_hint
from metaxl_tune.search.driver.options import SearchError

LOCK_SUFFIX = ".lock"
# Errors of file systems without locks (some FUSE mounts: s3fs, gcsfuse; NFS without lockd).
_NO_LOCKS = frozenset({errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EINVAL})
# A holder writes its line right after it locks; a refused driver waits this long to read it.
_HOLDER_WRITE_WAIT_S = 2.0


class SearchLockedError(SearchError):
    """Another driver runs this search now."""


def lock_path(storage: str | Path, name: str) -> Path:
    return Path(storage).resolve() / f"{name}{LOCK_SUFFIX}"


def describe_holder(holder: dict | None) -> str:
    if not holder:
        return "another driver (its host and pid are not written yet)"
    return f"pid {holder.get('pid')} on host {holder.get('host')}"


class HeldLock:
    """The lock a driver holds; ``release`` (once, from any thread) removes the file and unlocks."""

    def __init__(self, path: Path | None = None, descriptor: int | None = None):
        self.path = path
        self._descriptor = descriptor
        self._guard = threading.Lock()

    def release(self) -> None:
        with self._guard:
            if self._descriptor is not None:
                _release(self.path, self._descriptor)
                self._descriptor = None


@contextlib.contextmanager
def driver_lock(storage: str | Path, name: str, *, command: str, log: Callable[[str], None] = print) -> Iterator[HeldLock]:
    """Hold the search's lock for the ``with`` block; refuse (SearchLockedError) while another
    driver holds it."""
    if "://" in str(storage):
        # A bucket URI is refused by the search's own checks, with its own line.
        yield HeldLock()
        return
    path = lock_path(storage, name)
    # The folders made here for the lock file, removed again if the driver leaves them empty: a
    # search refused by its own checks (under the lock) creates nothing.
    made = [folder for folder in (path.parent, *path.parent.parents) if not folder.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor, previous = _acquire(path, command=command, name=name)
    except OSError as error:
        if error.errno not in _NO_LOCKS:
            raise
        log(f"warning: {path.parent} does not support file locks ({error.strerror}); nothing keeps a second "
            f"driver from running {command} {name} at the same time")
        yield HeldLock()
        return
    if previous:
        log(f"note: {command} {name}: taking over the lock {path} left by {describe_holder(previous)}, "
            "which is no longer running")
    held = HeldLock(path, descriptor)
    try:
        yield held
    finally:
        held.release()
        for folder in made:  # deepest first
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if empty


def _acquire(path: Path, *, command: str, name: str) -> tuple[int, dict | None]:
    """The locked descriptor of ``path`` and what a dead holder had written in it (None if nothing)."""
    while True:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _refusal(path, descriptor, command=command, name=name) from None
        except OSError:
            os.close(descriptor)
            raise
        # A holder that ended between our open and our lock has removed the file we opened;
        # locking that orphan would exclude nobody, so open the path again.
        if not _still_at(path, descriptor):
            os.close(descriptor)
            continue
        previous = _read_holder(descriptor)
        # The pid the user started: a supervised driver's supervisor (common/supervision.py).
        own = {"host": socket.gethostname(), "pid": user_pid(), "command": command,
               "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, (json.dumps(own) + "\n").encode(), 0)
        return descriptor, previous


def refuse_while_held(storage: str | Path, name: str, *, command: str) -> None:
    """Refuse (SearchLockedError) while a driver holds the search's lock; take nothing. For
    ``--resume``, which reads the saved options before ``driver_lock`` is taken: a driver in its
    first seconds holds the lock but has not written them yet, and is named rather than the
    search said to be missing."""
    path = lock_path(storage, name)
    try:
        descriptor = os.open(path, os.O_RDWR)
    except OSError:
        return  # no lock file: no driver (or storage the search's own checks will refuse)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise _refusal(path, descriptor, command=command, name=name) from None
    except OSError:
        pass  # no locks on this file system: driver_lock warns about it
    os.close(descriptor)


def release_left_lock(storage: str | Path, name: str, *, holder_pid: int) -> bool:
    """Remove the lock file of a driver that ended without unwinding (common/supervision.py:
    Ray ended it, or SIGKILL), for its supervisor: only if the lock is free and the file names
    ``holder_pid`` on this host. Whether it was removed."""
    path = lock_path(storage, name)
    try:
        descriptor = os.open(path, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(descriptor)  # held again (a new driver), or no locks here: leave it
        return False
    holder = _read_holder(descriptor) or {}
    if holder.get("pid") == holder_pid and holder.get("host") == socket.gethostname():
        _release(path, descriptor)
        return True
    os.close(descriptor)
    return False


def _refusal(path: Path, descriptor: int, *, command: str, name: str) -> SearchLockedError:
    """The refusal line naming the holder of the lock on ``descriptor`` (closed here)."""
    holder = _wait_for_holder(descriptor)
    os.close(descriptor)
    return SearchLockedError(
        f"{command} {name} is being run by {describe_holder(holder)}"
        f"{' since ' + holder['started'] if holder and holder.get('started') else ''} (lock {path}); "
        f"wait for it to end, or stop that driver (it saves its state) and then run "
        f"`{resume_hint(command, name, str(path.parent))}`"
    )


def _release(path: Path, descriptor: int) -> None:
    # Removed while still locked, so a driver that opens the path next finds a new file.
    with contextlib.suppress(OSError):
        if _still_at(path, descriptor):
            path.unlink()
    os.close(descriptor)


def _still_at(path: Path, descriptor: int) -> bool:
    try:
        on_disk = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(descriptor)
    return (on_disk.st_dev, on_disk.st_ino) == (held.st_dev, held.st_ino)


def _read_holder(descriptor: int) -> dict | None:
    text = os.pread(descriptor, 4096, 0).decode(errors="replace").strip()
    if not text:
        return None
    try:
        holder = json.loads(text)
    except ValueError:
        return {"host": "unknown", "pid": "unknown"}
    return holder if isinstance(holder, dict) else {"host": "unknown", "pid": "unknown"}


def _wait_for_holder(descriptor: int) -> dict | None:
    """Who holds the lock. Right after it locks, a holder has not yet replaced what a dead
    driver left in the file; on this host that shows (the pid is gone) and is waited out."""
    deadline = time.monotonic() + _HOLDER_WRITE_WAIT_S
    while True:
        holder = _read_holder(descriptor)
        if (holder and not _gone_from_this_host(holder)) or time.monotonic() >= deadline:
            return holder
        time.sleep(0.05)


def _gone_from_this_host(holder: dict) -> bool:
    if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return False
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
