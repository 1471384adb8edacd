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
