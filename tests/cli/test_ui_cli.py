"""`metaxl-tune ui`: the MLflow UI on the embedded store, lean, on 127.0.0.1."""

from __future__ import annotations

import signal
import subprocess
import time
import urllib.request

from processes import CLI, cli_env, free_port, kill_session, session_pids


def test_ui_serves_the_store_on_localhost_with_few_processes(tmp_path, shared_cache):
    port = free_port()
    process = subprocess.Popen([*CLI, "ui", "--port", str(port)], cwd=tmp_path, env=cli_env(shared_cache),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline, healthy = time.monotonic() + 120, False
        while time.monotonic() < deadline and not healthy:
            try:
                healthy = urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).read() == b"OK"
            except OSError:
                time.sleep(0.5)
        assert healthy
        assert len(session_pids(process.pid)) <= 4  # no job runner, one worker
        assert (tmp_path / "mlflow.db").exists()
    finally:
        kill_session(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def test_a_port_in_use_is_one_line_with_exit_status_2(tmp_path, shared_cache):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # A subprocess: had the check missed, ui would exec the MLflow server in its place.
        result = subprocess.run([*CLI, "ui", "--port", str(port)], cwd=tmp_path, env=cli_env(shared_cache),
                                capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"error: --port {port}: already in use on 127.0.0.1; choose another port or stop what listens there"]
