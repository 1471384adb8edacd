"""Ctrl-C in `best --rerun`: one line saying what was kept, exit status 130, and no study file
left behind for an ablation that never started (it used to leave one each time)."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from processes import CLI, cli_env, kill_session, read_until
from search_store import NAME, build_search_store




def test_ctrl_c_in_best_rerun_says_what_was_kept_and_leaves_no_study_file(tmp_path):
    (tmp_path / "store").mkdir()
    store = build_search_store(tmp_path / "store")
    storage = tmp_path / "searches"
    process = subprocess.Popen(
        [*CLI, "best", "--name", NAME, "--rerun", "--top", "1", "--seeds", "1", "--tracking-uri", store,
         "--storage", str(storage)],
        cwd=tmp_path, env={**cli_env(tmp_path / "cache"), "PYTHONFAULTHANDLER": "1"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )
    try:
        # Logged by the re-run's ablation once its offline checks pass, before Ray starts.
        before = read_until(process, f"ablation {NAME}-rerun-", timeout=300)
        assert list(storage.glob("*.study.yaml")), "the re-run's study file is written before it starts"
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C in a terminal: the whole foreground group
        try:
            stdout, stderr = process.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            # PYTHONFAULTHANDLER: SIGABRT prints every thread's stack, which says where it waits.
            process.send_signal(signal.SIGABRT)
            stdout, stderr = process.communicate(timeout=30)
            pytest.fail(f"best --rerun still ran 120 s after Ctrl-C:\n{stdout}\n{stderr}")
        status = process.returncode
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        kill_session(process.pid)  # anything a half-started Ray left in the session
    name = before.rsplit("ablation ", 1)[1].split(":", 1)[0]
    assert status == 130, (stdout, stderr)
    assert stdout.strip().splitlines()[-1] == f"interrupted before re-run {name} started; nothing was kept", stdout
    assert "Traceback" not in stdout + stderr and "Aborted" not in stdout + stderr
    assert not list(storage.glob("*.study.yaml"))
    assert not (storage / name).exists()
