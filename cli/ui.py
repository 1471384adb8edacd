"""`metaxl-tune ui`: the MLflow UI on the configured tracking store, started lean."""

from __future__ import annotations

import os
from typing import Optional

import typer

from .common import user_errors


def ui(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind; 0.0.0.0 exposes the UI to the network."),
    port: int = typer.Option(5000, "--port", help="Port to listen on."),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="Backend store (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)."),
) -> None:
    """Serve the MLflow UI for the searches' tracking store (one worker, no job runner)."""
    from metaxl_tune.tracking import server_command, server_environment, default_tracking_uri

    with user_errors():
        uri = tracking_uri or default_tracking_uri()
        command = server_command(uri, host=host, port=port)
    typer.echo(f"MLflow UI for {uri} at http://{host}:{port}")
    os.execvpe(command[0], command, server_environment())
