"""An authenticated tracking stack for the tests: PostgreSQL and an MLflow server with basic auth.

Both run on 127.0.0.1 from throwaway folders and are stopped by their PIDs. PostgreSQL is
Debian's (``.ci/run`` installs it where it is missing); its ``initdb`` refuses to run as root,
so under root the cluster belongs to the ``postgres`` user, in a folder of its own under /tmp
(pytest's folders are private to root).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from processes import MLFLOW, free_port, healthy, kill_session, stop_server


def postgres_bindir() -> Path | None:
    """Where initdb and postgres are: on PATH, else Debian's versioned folder (the newest)."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda path: int(path.parts[-3]))
    return candidates[-1].parent if candidates else None


class PostgresCluster:
    """A PostgreSQL cluster on 127.0.0.1 whose superuser ``user`` has ``password``, with an
    empty database ``database``."""

    def __init__(self, password: str, *, user: str = "mlflow", database: str = "mlflow"):
        bindir = postgres_bindir()
        if bindir is None:
            raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql; .ci/run does it)")
        self.user, self.password, self.database = user, password, database
        self.directory = Path(tempfile.mkdtemp(prefix="metaxl-pg-"))
        owner = {"user": "postgres", "group": "postgres", "extra_groups": []} if os.geteuid() == 0 else {}
        if owner:
            shutil.chown(self.directory, "postgres", "postgres")
        password_file = self.directory / "password"
        password_file.write_text(password)
        if owner:
            shutil.chown(password_file, "postgres", "postgres")
        # -N: no fsync, a throwaway cluster; scram for every connection, so the password matters.
        subprocess.run([str(bindir / "initdb"), "-D", str(self.directory / "data"), "-U", user, "--pwfile",
                        str(password_file), "--auth=scram-sha-256", "-E", "UTF8", "-N"],
                       check=True, capture_output=True, **owner)
        password_file.unlink()
        self.port = free_port()
        self.log = self.directory / "postgres.log"
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [str(bindir / "postgres"), "-D", str(self.directory / "data"), "-h", "127.0.0.1", "-p", str(self.port),
                 "-k", str(self.directory)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **owner)
        self._create_database()

    def uri(self, password: str | None = None) -> str:
        return f"postgresql://{self.user}:{password or self.password}@127.0.0.1:{self.port}/{self.database}"

    def _create_database(self, timeout: float = 60.0) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(host="127.0.0.1", port=self.port, user=self.user, password=self.password,
                                     dbname="postgres", autocommit=True, connect_timeout=2) as connection:
                    connection.execute(f'CREATE DATABASE "{self.database}"')
                return
            except psycopg.OperationalError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"postgres did not start: {self.log.read_text()[-2000:]}") from None
                time.sleep(0.5)

    def stop(self) -> None:
        # SIGINT: PostgreSQL's fast shutdown (ends the server's connections and stops at once).
        try:
            os.kill(self.process.pid, signal.SIGINT)
            self.process.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            kill_session(self.process.pid)
            self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


class AuthenticatedMlflowServer:
    """`mlflow server --app-name basic-auth` on 127.0.0.1: runs in ``backend_uri`` (given in the
    environment, never on the command line), artifacts in ``directory/artifacts``, users in an
    sqlite file next to them; the admin ``user`` has ``password``."""

    def __init__(self, directory: Path, backend_uri: str, *, user: str, password: str):
        self.directory = directory
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        config = directory / "basic_auth.ini"
        config.write_text(
            "[mlflow]\ndefault_permission = READ\n"
            f"database_uri = sqlite:///{directory / 'auth.db'}\n"
            f"admin_username = {user}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        )
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_BACKEND_STORE_URI": backend_uri,
               "MLFLOW_AUTH_CONFIG_PATH": str(config), "MLFLOW_AUTH_ADMIN_PASSWORD": password,
               "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16)}
        for variable in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            env.pop(variable, None)
        self.log = directory / "server.log"
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [*MLFLOW, "server", "--app-name", "basic-auth", "--host", "127.0.0.1", "--port", str(self.port),
                 "--workers", "1", "--artifacts-destination", str(directory / "artifacts")],
                cwd=directory, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        if not healthy(self.uri, self.process, timeout=180):
            self.stop()
            raise RuntimeError(f"mlflow server did not start: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        stop_server(self.process)
