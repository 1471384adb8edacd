"""Which tracking stores a command takes, each checked before any work, in one line when it cannot work.

Taken: an MLflow server (``http://`` or ``https://``, with credentials in the URI or in MLflow's
variables), an sqlite file (``sqlite:///PATH.db``), PostgreSQL (``postgresql://``, with the
``metaxl-tune[postgres]`` extra) and a local folder (a path or ``file:///PATH``). Each is
probed the way its client would fail later: the server's health and then its answer to the
credentials, the database's driver and a connection, the sqlite file's folder and header, the
folder's parent. Everything else (Databricks, MySQL, SQL Server, other schemes) is refused by
name. URIs are shown masked (common/secrets.py) in every message.
"""

from __future__ import annotations

import base64
import os
import ssl
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from metaxl_tune.common.secrets import is_masked, mask_text, mask_uri, remember, stands_for, without_credentials
from metaxl_tune.common.folders import writable as _writable

DEFAULT_DB = "mlflow.db"
POSTGRES_EXTRA = "pip install 'metaxl-tune[postgres]'"
CREDENTIAL_HINT = ("put the user and password in the URI (USER:PASSWORD@ before the host) or set "
                   "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN)")
_SQLITE_HEADER = b"SQLite format 3\x00"

_REFUSED = {
    "databricks": "Databricks workspaces are not supported as a tracking store; use an MLflow server, "
                  "http(s)://HOST:PORT",
    "mysql": "MySQL stores are not supported directly; serve it with `mlflow server --backend-store-uri URI` "
             f"and pass the server's http(s)://HOST:PORT, or use PostgreSQL (postgresql://, {POSTGRES_EXTRA})",
    "mssql": "SQL Server stores are not supported directly; serve it with `mlflow server --backend-store-uri URI` "
             f"and pass the server's http(s)://HOST:PORT, or use PostgreSQL (postgresql://, {POSTGRES_EXTRA})",
}
_REFUSED.update({name: _REFUSED["databricks"] for name in ("databricks-uc", "uc")})
_POSTGRES_DRIVERS = ("", "psycopg", "psycopg2")
"""SQLAlchemy drivers of postgresql[+DRIVER]:// that the postgres extra installs ('' = SQLAlchemy's default)."""


class TrackingError(ValueError):
    """The tracking store cannot be used; the message says what to change."""


def default_tracking_uri(*, create: bool = False) -> str:
    """$MLFLOW_TRACKING_URI, else the sqlite store in the runs folder (made when ``create``:
    commands that write; readers only report a missing store)."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    from metaxl_tune.common.paths import runs_dir

    if create:
        try:
            runs_dir().mkdir(parents=True, exist_ok=True)
        except OSError as error:
            # The folder came from $METAXL_TUNE_RUNS (or is the default): name that, not a flag.
            from metaxl_tune.common.origins import RUNS_ENV

            source = f"${RUNS_ENV} " if os.environ.get(RUNS_ENV) else ""
            raise TrackingError(f"{source}{runs_dir()}: cannot create the runs folder "
                                f"({(error.strerror or str(error)).lower()}); choose a writable folder") from None
    return f"sqlite:///{(runs_dir() / DEFAULT_DB).resolve()}"


def scheme_of(uri: str) -> str:
    """The URI's scheme without its driver (``postgresql+psycopg`` -> ``postgresql``); '' for a path."""
    if "://" not in uri:
        if uri.lower() in ("databricks", "databricks-uc", "uc"):  # MLflow reads these bare names as schemes
            return uri.lower()
        return "file" if uri.lower().startswith("file:") else ""
    return uri.split("://", 1)[0].lower().split("+", 1)[0]


def check_tracking_uri(uri: str, *, timeout: float = 5.0, named: str = "--tracking-uri") -> None:
    """Fail fast, before Ray starts, when a tracking URI cannot work or its store does not answer.
    ``named``: what supplied the URI (``origins.tracking_uri_named``), named in the error."""
    remember(uri)
    shown = f"{named} {mask_uri(uri)}"
    scheme = scheme_of(uri)
    if scheme in _REFUSED:
        raise TrackingError(f"{shown}: {_REFUSED[scheme]}")
    if scheme in ("http", "https"):
        _check_server(uri, shown, named, timeout)
    elif scheme == "sqlite":
        _check_sqlite(uri, shown, named)
    elif scheme == "postgresql":
        _check_postgres(uri, shown, named, timeout)
    elif scheme in ("", "file"):
        _check_folder(uri, shown)
    else:
        raise TrackingError(
            f"{shown}: unsupported scheme '{scheme}://'; use http(s)://HOST:PORT, "
            "sqlite:///FILE.db, postgresql://USER@HOST/DB or a folder"
        )


# ---- MLflow servers ------------------------------------------------------------------------------


def server_base(uri: str) -> str:
    """The server's address without credentials: what requests are sent to."""
    parts = urllib.parse.urlsplit(uri)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"  # IPv6
    port = f":{parts.port}" if parts.port is not None else ""
    return urllib.parse.urlunsplit((parts.scheme, host + port, parts.path.rstrip("/"), "", ""))


def _ssl_context() -> ssl.SSLContext | None:
    # The same TLS settings as MLflow's client (its variables), so the probe agrees with it.
    if os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() == "true":
        return ssl._create_unverified_context()  # noqa: S323 - the user asked for it, as MLflow reads it
    if os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH"):
        return ssl.create_default_context(cafile=os.environ["MLFLOW_TRACKING_SERVER_CERT_PATH"])
    return None


def _open(url: str, timeout: float, headers: dict[str, str] | None = None):
    request = urllib.request.Request(url, headers=headers or {})
    return urllib.request.urlopen(request, timeout=timeout, context=_ssl_context())


def server_answers(uri: str, timeout: float = 3.0) -> bool:
    """Whether the server's health endpoint answers now (no credentials needed)."""
    try:
        with _open(server_base(uri) + "/health", timeout) as response:
            response.read()
    except (urllib.error.URLError, OSError, ValueError):
        return False
    return True


def _authorization(uri: str) -> tuple[str | None, str]:
    """The Authorization header MLflow's client will send, and where its credentials come from.
    Credentials in the URI win over the variables (requests puts them last)."""
    parts = urllib.parse.urlsplit(uri)
    if parts.username is not None:
        pair = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
        return "Basic " + base64.b64encode(pair.encode()).decode(), "the URI"
    from mlflow.utils.credentials import read_mlflow_creds

    # MLflow's own reader: its variables, else its ~/.mlflow/credentials file.
    user, password = read_mlflow_creds()
    if user and password:
        pair = f"{user}:{password}"
        return ("Basic " + base64.b64encode(pair.encode()).decode(),
                "$MLFLOW_TRACKING_USERNAME and $MLFLOW_TRACKING_PASSWORD (or ~/.mlflow/credentials)")
    if os.environ.get("MLFLOW_TRACKING_TOKEN"):
        return f"Bearer {os.environ['MLFLOW_TRACKING_TOKEN']}", "$MLFLOW_TRACKING_TOKEN"
    return None, ""


def _check_server(uri: str, shown: str, named: str, timeout: float) -> None:
    parts = urllib.parse.urlsplit(uri)
    try:
        parts.port
    except ValueError:
        raise TrackingError(f"{shown}: the port is not a number from 0 to 65535; use http(s)://HOST:PORT") from None
    if not parts.hostname:
        raise TrackingError(f"{shown}: no host name; use http(s)://HOST:PORT")
    if parts.query or parts.fragment:
        raise TrackingError(
            f"{shown}: MLflow appends its API paths to the URI, so it cannot carry a query string or fragment; "
            "give a token in MLFLOW_TRACKING_TOKEN, or a user and password in the URI or in "
            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
        )
    base = server_base(uri)
    try:
        with _open(base + "/health", timeout) as response:
            response.read()
    except (urllib.error.URLError, OSError) as error:
        reason = mask_text(str(getattr(error, "reason", error)))
        raise TrackingError(
            f"cannot reach the MLflow tracking server at {mask_uri(uri)} ({reason}); start it "
            f"(metaxl-tune ui, or mlflow server) or {'unset' if named.startswith('$') else 'drop'} {named} "
            "to use the embedded sqlite store"
        ) from None
    _check_credentials(base, uri, shown, timeout)


def _check_credentials(base: str, uri: str, shown: str, timeout: float) -> None:
    """A read any user may make: 401 or 403 here would fail the first MLflow call of the work."""
    header, source = _authorization(uri)
    try:
        with _open(base + "/api/2.0/mlflow/experiments/search?max_results=1", timeout,
                   {"Authorization": header} if header else None) as response:
            response.read()
    except urllib.error.HTTPError as error:
        if error.code == 401 and header is None:
            raise TrackingError(f"{shown}: the server asks for credentials (401 Unauthorized); {CREDENTIAL_HINT}") from None
        if error.code == 401:
            raise TrackingError(f"{shown}: the server refused the credentials from {source} (401 Unauthorized); "
                                "check the user name and password (or token)") from None
        if error.code == 403:
            raise TrackingError(f"{shown}: the server's user from {source or 'no credentials'} may not read "
                                "experiments (403 Forbidden); ask its admin for permission or use another user") from None
        # Anything else (an older server's path, a proxy's page) is left to MLflow's own client.
    except (urllib.error.URLError, OSError):
        pass  # it answered its health check a moment ago; an outage now is handled by the search


# ---- databases and folders -----------------------------------------------------------------------



def _check_sqlite(uri: str, shown: str, named: str) -> None:
    if not uri.startswith("sqlite:///"):
        raise TrackingError(f"{shown}: an sqlite store is a file: sqlite:///RELATIVE.db or sqlite:////ABSOLUTE.db")
    database = uri[len("sqlite:///"):].split("?", 1)[0]
    if database in ("", ":memory:"):
        raise TrackingError(f"{shown}: an in-memory store keeps nothing; name a file: sqlite:///PATH.db")
    path = Path(database)
    folder = path.parent
    if not folder.is_dir():
        raise TrackingError(f"no MLflow store at {database}: its folder {folder} does not exist; "
                            f"create it or check {named}")
    if path.exists():
        if not path.is_file():
            raise TrackingError(f"{shown}: {path} is not a file; name an sqlite file")
        try:
            with path.open("rb") as handle:
                header = handle.read(len(_SQLITE_HEADER))
        except OSError as error:
            raise TrackingError(f"{shown}: cannot read {path} ({(error.strerror or str(error)).lower()}); "
                                "check its permissions") from None
        if header and header != _SQLITE_HEADER:
            raise TrackingError(f"{shown}: {path} is not an sqlite database; name another file")
    elif not _writable(folder):
        raise TrackingError(f"{shown}: cannot create the store in {folder} (not a writable folder); "
                            f"choose a writable folder or check {named}")


def _check_postgres(uri: str, shown: str, named: str, timeout: float) -> None:
    import sqlalchemy
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError
    from sqlalchemy.pool import NullPool

    try:
        url = make_url(uri)
        dialect = url.get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError):
        raise TrackingError(f"{shown}: not a PostgreSQL URI SQLAlchemy can read; use "
                            "postgresql://USER@HOST:PORT/DATABASE (with :PASSWORD after USER)") from None
    if url.get_driver_name() not in _POSTGRES_DRIVERS and "+" in uri.split("://", 1)[0]:
        raise TrackingError(f"{shown}: driver '{url.get_driver_name()}' is not supported; use postgresql:// "
                            "(or postgresql+psycopg://, postgresql+psycopg2://)")
    try:
        dialect.import_dbapi()
    except ImportError as error:
        raise TrackingError(f"{shown}: the PostgreSQL driver ({error.name or url.get_driver_name()}) is not "
                            f"installed; install it with: {POSTGRES_EXTRA}") from None
    engine = sqlalchemy.create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": max(1, round(timeout))})
    try:
        with engine.connect():
            pass
    except Exception as error:  # noqa: BLE001 - every driver raises its own types
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()
        raise TrackingError(f"cannot connect to the PostgreSQL store {mask_uri(uri)} "
                            f"({mask_text(reason[0] if reason else type(error).__name__)}); "
                            f"check its host, port, database, user and password in {named}") from None
    finally:
        engine.dispose()


def _check_folder(uri: str, shown: str) -> None:
    if scheme_of(uri) == "file":
        parts = urllib.parse.urlsplit(uri)
        if parts.netloc not in ("", "localhost"):
            raise TrackingError(f"{shown}: file://{parts.netloc}/... names the host '{parts.netloc}'; a file URI "
                                "takes an absolute path, file:///ABSOLUTE/PATH (or give the folder as a plain path)")
        path = Path(urllib.parse.unquote(parts.path))
    else:
        path = Path(uri)
    if path.exists():
        if not path.is_dir():
            raise TrackingError(f"{shown}: {path} is a file; a folder store is a folder")
        return
    if not path.parent.is_dir():
        raise TrackingError(f"{shown}: its folder {path.parent} does not exist; create it or name another")
    if not _writable(path.parent):
        raise TrackingError(f"{shown}: cannot create {path} ({path.parent} is not writable); choose a writable folder")


# ---- URIs read back from saved options -----------------------------------------------------------


def _server_credentials_given() -> bool:
    """Whether MLflow will sign in to a server without credentials in the URI: its user and
    password (variables or ~/.mlflow/credentials) or its token variable."""
    from mlflow.utils.credentials import read_mlflow_creds

    user, password = read_mlflow_creds()
    return bool(user and password) or bool(os.environ.get("MLFLOW_TRACKING_TOKEN"))


def usable_saved_uri(uri: str, options_file: Path) -> str:
    """A tracking URI as saved in a search's or ablation's options, with its credentials back.
    They are never saved (common/secrets.py); they come from $MLFLOW_TRACKING_URI when it masks
    to the saved URI, else for a server from MLflow's credential variables (the URI's user info
    dropped); else one line says what to pass. (A --tracking-uri given on --resume replaces the
    saved URI before this.)"""
    if not is_masked(uri):
        return uri
    given = os.environ.get("MLFLOW_TRACKING_URI")
    if given and mask_uri(given) == uri:
        return given
    if scheme_of(uri) in ("http", "https") and _server_credentials_given():
        # Tune's saved callbacks hold the masked URI too: unpickled, they use this one (secrets.unmask).
        stands_for(uri, without_credentials(uri))
        return without_credentials(uri)
    raise TrackingError(
        f"the tracking URI saved in {options_file}, {uri}, had credentials, which are never saved; "
        "pass it again with --tracking-uri (credentials included), or set MLFLOW_TRACKING_USERNAME and "
        "MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN) for a server"
    )



def resume_credentials(uri: str | None) -> str:
    """What a resume command must add to find ``uri`` again: `` --tracking-uri 'URI'`` with
    ``***`` to fill in when its credentials are not in this environment (credentials are never
    saved); '' when nothing is needed."""
    if not uri:
        return ""
    masked = mask_uri(uri)
    if not is_masked(masked):
        return ""
    given = os.environ.get("MLFLOW_TRACKING_URI")
    if given and mask_uri(given) == masked:
        return ""
    if scheme_of(uri) in ("http", "https") and _server_credentials_given():
        return ""
    return f" --tracking-uri '{masked}' (its credentials in place of ***: they are never saved)"
