"""Whether a server could listen on HOST:PORT, asked before the server starts.

``mlflow server`` reports a taken port or an unknown host only in its own log and may still exit
0; binding a socket first turns both into one line naming the flag to change.
"""

from __future__ import annotations

import errno
import socket

MAX_PORT = 65535


class BindError(ValueError):
    """The server could not listen where asked; the message names --host or --port."""


def check_port(port: int) -> None:
    if not 1 <= port <= MAX_PORT:
        raise BindError(f"--port {port}: must be a port number from 1 to {MAX_PORT}")


def check_bind(host: str, port: int) -> None:
    """Bind (and release) HOST:PORT with the options a server uses (SO_REUSEADDR, as uvicorn)."""
    check_port(port)
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as error:
        reason = error.strerror if isinstance(error, socket.gaierror) else str(error)
        raise BindError(f"--host {host}: does not resolve ({reason}); use an address of this machine, "
                        "e.g. 127.0.0.1 or 0.0.0.0") from None
    family, kind, protocol, _, address = addresses[0]
    with socket.socket(family, kind, protocol) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise BindError(f"--port {port}: already in use on {host}; choose another port "
                                "or stop what listens there") from None
            if error.errno == errno.EADDRNOTAVAIL:
                raise BindError(f"--host {host}: not an address of this machine; use 127.0.0.1 or 0.0.0.0") from None
            if error.errno == errno.EACCES:
                raise BindError(f"--port {port}: not allowed for this user (ports below 1024 need privileges); "
                                "choose a port above 1023") from None
            raise BindError(f"--host {host} --port {port}: cannot listen there ({error.strerror})") from None
