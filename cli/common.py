"""Shared CLI plumbing: one line for every user error, a bug line before any other traceback.

The rule every command follows:

- A problem the user can fix (a bad flag value, a missing or unreadable file, a folder that
  cannot be written, a combination of options that makes no sense) prints exactly one line,
  ``error: <flag or file>: <what is wrong and what to change>``, and exits with status 2.
  Library code raises these as ``ValueError`` subclasses (ConfigError, DataError, ...) or
  ``OSError``s inside a command's ``user_errors()`` block; Click's own usage errors (unknown
  option, wrong type) are flattened to one line by :class:`ErrorReportingGroup`.
- Anything else is a bug: one line saying so comes first, then Python's traceback.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import sys
from pathlib import Path
from typing import Any, Iterator

import typer
import typer.core
from metaxl_tune.common.folders import writable as _writable

try:  # Typer >= 0.20 vendors Click as typer._click
    from typer._click.exceptions import ClickException, UsageError
except ImportError:  # pragma: no cover - older Typer on top of Click
    from click.exceptions import ClickException, UsageError

EXIT_USER_ERROR = 2
BUG_LINE = (
    "error: unexpected failure, a bug in metaxl-tune; please report it with the command line "
    "and the traceback below"
)


class UserError(Exception):
    """A one-line, user-fixable error; printed as ``error: ...`` with exit status 2."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def describe_os_error(error: OSError) -> str:
    """``<file>: <what happened>; <what to change>`` for the OS errors users cause."""
    if error.errno is None:  # raised by our own code with a complete message
        return _one_line(str(error))
    where = str(error.filename) if error.filename is not None else ""
    if error.filename2 is not None:
        where = f"{where} -> {error.filename2}"
    reason = (error.strerror or str(error)).lower()
    hints = {
        errno.EACCES: "check its permissions or choose another path",
        errno.EPERM: "check its permissions or choose another path",
        errno.EROFS: "the file system is read-only; choose another path",
        errno.ENOSPC: "free some space or choose another disk",
        errno.ENOENT: "check the path",
        errno.EISDIR: "name a file, not a folder",
        errno.ENOTDIR: "a part of the path is a file, not a folder",
        errno.EEXIST: "choose another path",
    }
    hint = hints.get(error.errno or 0)
    return (f"{where}: " if where else "") + reason + (f"; {hint}" if hint else "")


def describe(error: BaseException) -> str:
    """One line for a user error raised by the library."""
    if isinstance(error, OSError):
        return describe_os_error(error)
    if isinstance(error, UnicodeDecodeError):
        # Readers name the file themselves; this is the fallback when one did not.
        return f"a file is not UTF-8 text ({error.reason} at byte {error.start}); save it as UTF-8"
    return _one_line(str(error))


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Library errors about user input (ValueError subclasses with one-line messages, and
    OS errors about the user's files and folders) become one ``error: ...`` line, exit 2."""
    # Printed here rather than left to ErrorReportingGroup, so that a command also keeps the
    # policy when mounted on another Typer app (as the tests of single commands do).
    try:
        yield
    except UserError as error:
        _print_error(error.message)
    except (ValueError, OSError) as error:
        _print_error(describe(error))
    else:
        return
    raise typer.Exit(code=EXIT_USER_ERROR)


def fail(message: str) -> UserError:
    """``raise fail("--flag: what to change")`` from a command."""
    return UserError(message)


# ---- paths the user names -------------------------------------------------------------------



def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_creatable(path: Path, flag: str) -> None:
    """``path`` does not exist yet: its nearest existing ancestor must be a writable folder."""
    ancestor = _nearest_existing(path)
    if not ancestor.is_dir():
        raise fail(f"{flag} {path}: {ancestor} is a file, not a folder; choose another path")
    if not _writable(ancestor):
        raise fail(f"{flag} {path}: cannot create it, {ancestor} is not writable; choose a writable folder")


def check_output_dir(path: Path, flag: str = "--output") -> None:
    """A folder a command will write into: an existing writable folder, or creatable."""
    if path.exists():
        if not path.is_dir():
            raise fail(f"{flag} {path}: is a file, not a folder; name a folder (new or existing)")
        if not _writable(path):
            raise fail(f"{flag} {path}: the folder is not writable; check its permissions or choose another")
        return
    _check_creatable(path, flag)


def check_output_file(path: Path, flag: str = "--output") -> None:
    """A file a command will (over)write: not a folder, and in a writable or creatable folder."""
    if path.is_dir():
        raise fail(f"{flag} {path}: is a folder; name a file such as {path / 'out'}")
    if path.exists():
        try:  # opened for append and closed: neither content nor mtime changes
            open(path, "a").close()
        except OSError:
            raise fail(f"{flag} {path}: the file is not writable; check its permissions or choose another path")
        return
    parent = path.parent
    if not parent.exists():
        _check_creatable(parent, flag)
    elif not parent.is_dir():
        raise fail(f"{flag} {path}: {parent} is a file, not a folder; choose another path")
    elif not _writable(parent):
        raise fail(f"{flag} {path}: the folder {parent} is not writable; choose a writable folder")


def check_cache_dir(cache_dir: Path | None) -> None:
    """The encoded-data cache: --cache-dir when given, else $METAXL_TUNE_CACHE when set (named as
    such in the error: the user never typed --cache-dir); the built-in default is left to the run."""
    from metaxl_tune.common.origins import CACHE_ENV

    if cache_dir is not None:
        check_output_dir(cache_dir, "--cache-dir")
    elif os.environ.get(CACHE_ENV):
        check_output_dir(Path(os.environ[CACHE_ENV]), f"${CACHE_ENV}")


def check_positive(value: float | None, flag: str, *, allow_zero: bool = False) -> None:
    if value is None:
        return
    if not math.isfinite(value):  # nan passes every comparison below; inf is no amount
        raise fail(f"{flag}: must be a finite number (got {value})")
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise fail(f"{flag}: must be {bound} (got {value})")


# ---- the app's group: Click's usage errors in one line, a bug line before tracebacks ------------


class ErrorReportingGroup(typer.core.TyperGroup):
    """Runs every command under the one error policy of this module."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort):
            raise
        except UserError as error:
            _print_error(error.message)
        except UsageError as error:
            # Click prints a usage box; one line naming the flag is enough, with the way to help.
            where = error.ctx.command_path if error.ctx is not None else ctx.command_path
            _print_error(f"{_one_line(error.format_message())} (see {where} --help)")
        except ClickException:
            raise
        except BrokenPipeError:
            # The reader of the output went away (`metaxl-tune best ... | head`): no bug, and
            # nothing more can reach it. Click's standalone main ends such a command quietly
            # (status 1, its streams' last flush pacified).
            raise
        except Exception:
            print(BUG_LINE, file=sys.stderr, flush=True)
            raise
        raise typer.Exit(code=EXIT_USER_ERROR)


def _print_error(message: str) -> None:
    from metaxl_tune.common.secrets import mask_text

    # Every error line is masked: a flag's value echoed back may be a URI with its password.
    typer.secho(f"error: {mask_text(message)}", err=True, fg=typer.colors.RED)
