"""The CLI's one error policy: OS errors in one line naming the file, output paths checked first."""

from __future__ import annotations

import errno

import pytest

from metaxl_tune.cli.common import UserError, check_output_dir, check_output_file, describe


@pytest.mark.parametrize(
    "error, line",
    [
        (PermissionError(errno.EACCES, "Permission denied", "/x/y"), "/x/y: permission denied; check its permissions or choose another path"),
        (OSError(errno.ENOSPC, "No space left on device", "/ckpt"), "/ckpt: no space left on device; free some space or choose another disk"),
        (IsADirectoryError(errno.EISDIR, "Is a directory", "/runs"), "/runs: is a directory; name a file, not a folder"),
        (FileNotFoundError("--resume: no checkpoint in runs/x/checkpoint"), "--resume: no checkpoint in runs/x/checkpoint"),
        (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), "connection refused"),
    ],
)
def test_os_errors_are_one_line_naming_the_file(error, line):
    assert describe(error) == line


def test_output_checks_create_nothing_and_name_the_flag(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match=r"^--output .*/file: is a file, not a folder"):
        check_output_dir(tmp_path / "file")
    with pytest.raises(UserError, match=r"^-o .*: is a folder; name a file"):
        check_output_file(tmp_path, "-o")
    check_output_dir(tmp_path / "new" / "deeper")
    check_output_file(tmp_path / "new" / "best.yaml")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["file"]


def test_a_reader_that_went_away_is_no_bug():
    """`metaxl-tune train --help | head -80`: head exits while the command still writes. The
    write's BrokenPipeError ends the command quietly (status 1, as Click ends it), without the
    bug line that other exceptions get."""
    import typer
    from typer.testing import CliRunner

    from metaxl_tune.cli.common import BUG_LINE, ErrorReportingGroup

    app = typer.Typer(cls=ErrorReportingGroup)

    @app.command()
    def talk():
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    @app.command()
    def fail():
        raise RuntimeError("a bug")

    gone, bug = CliRunner().invoke(app, ["talk"]), CliRunner().invoke(app, ["fail"])
    assert gone.exit_code == 1 and BUG_LINE not in gone.output
    assert BUG_LINE in bug.output  # the policy for other exceptions stands


def test_help_into_a_reader_that_stops_after_80_lines_ends_quietly(tmp_path):
    """The fault as it arrives: `metaxl-tune train --help | head -80`, the reader closing the
    pipe after 80 lines while the help is still being written."""
    import fcntl
    import subprocess

    from processes import CLI, cli_env

    command = subprocess.Popen([*CLI, "train", "--help"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=cli_env(tmp_path))
    # A one-page pipe: the help (about 35 kB) cannot all be written before the reader leaves.
    fcntl.fcntl(command.stdout.fileno(), fcntl.F_SETPIPE_SZ, 4096)
    for _ in range(80):
        assert command.stdout.readline()
    command.stdout.close()
    stderr = command.stderr.read().decode()
    command.wait(timeout=120)
    assert command.returncode == 1
    assert stderr == ""
