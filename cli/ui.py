"""`metaxl-tune ui`: the MLflow UI on the configured tracking store, started lean."""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request
from typing import Optional

import typer

from metaxl_tune.common.bind_check import check_bind, check_port
from metaxl_tune.common.names import check_name

from .common import user_errors

EXAMPLES = """
Examples:

  metaxl-tune ui                                   # every search, on http://127.0.0.1:5000

  metaxl-tune ui --name demo-20261130-061500 --open   # that search's runs, in a browser
"""


def ui(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind; 0.0.0.0 exposes the UI to the network."),
    port: int = typer.Option(5000, "--port", help="Port to listen on."),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="Backend store (default: $MLFLOW_TRACKING_URI, else sqlite:///metaxl-runs/mlflow.db)."),
    name: Optional[str] = typer.Option(None, "--name", help="A search or ablation: print the URL of its runs view (its parent run and summary, then its trials with their searched parameters)."),
    open_browser: bool = typer.Option(False, "--open", help="Open the URL in a browser once the server answers."),
) -> None:
    """Serve the MLflow UI for the searches' tracking store (one worker, no job runner)."""
    from metaxl_tune.common.origins import tracking_uri_named
    from metaxl_tune.common.secrets import mask_uri
    from metaxl_tune.results.tracking import (
        Tracker, check_tracking_uri, default_tracking_uri, search_runs_url, server_command, server_environment,
    )

    with user_errors():
        if name is not None:
            check_name(name)
        check_port(port)
        uri = tracking_uri or default_tracking_uri(create=name is None)
        command = server_command(uri, host=host, port=port)
        check_tracking_uri(uri, named=tracking_uri_named(tracking_uri))
        base = f"http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}"
        url = base
        if name is not None:
            tracker = Tracker(uri, name)
            url = search_runs_url(base, _experiment_of(tracker), tracker.share_search_view())
        # Last, just before the server takes the port: a taken port or unknown host is one line here.
        check_bind(host, port)
    typer.echo(f"MLflow UI for {mask_uri(uri)} at {base}")
    if name is not None:
        typer.echo(f"search {name}: {url}")
    if not open_browser:
        os.execvpe(command[0], command, server_environment(uri))
    server = subprocess.Popen(command, env=server_environment(uri))
    try:
        if _wait_healthy(base, server):
            import webbrowser

            if not webbrowser.open(url):
                typer.echo(f"no browser found; open {url}", err=True)
        server.wait()
    except KeyboardInterrupt:
        server.terminate()
        server.wait(timeout=30)


def _experiment_of(tracker) -> str:
    """The search's experiment id; one line naming what to change when the search is not there."""
    if not tracker.trial_runs_exist():
        raise ValueError(f"--name {tracker.search_name}: no such search in {tracker.shown_uri}; "
                         "check --name and --tracking-uri")
    return tracker.experiment_id


def _wait_healthy(base: str, server: subprocess.Popen, timeout: float = 120.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and server.poll() is None:
        try:
            if urllib.request.urlopen(f"{base}/health", timeout=2).read() == b"OK":
                return True
        except OSError:
            time.sleep(0.5)
    return False


ui.__doc__ = (ui.__doc__ or "") + "\n" + EXAMPLES
