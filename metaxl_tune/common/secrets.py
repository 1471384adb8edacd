"""Credentials never leave the process: the one place that masks them in URIs and text.

A tracking URI may carry a password (``http://alice:PW@host:5000``,
``postgresql://mlflow:PW@db/mlflow``) or a token in its query string (``?password=...``,
``?token=...``). Everything the project writes (lines on the terminal, saved options, Tune's
pickled state, MLflow tags and params, report files) goes through :func:`mask_text` or
:func:`mask_uri` first, which put ``***`` in their place:

- the password of a URI's user info (``alice:***@``); for http(s) a user info without a
  password is a token (``https://TOKEN@host``) and is masked whole;
- the value of every query parameter whose name says it is a secret (:func:`is_secret_name`:
  token, password, secret, signature, credential, auth, and the keys that are credentials,
  ``key``, ``api_key``, ``access_key``; not a name that merely ends in "Key", such as MLflow's
  own ``viewStateShareKey``);
- the values of MLflow's credential variables (``MLFLOW_TRACKING_PASSWORD``,
  ``MLFLOW_TRACKING_TOKEN``) and every secret of a URI seen by :func:`remember`, wherever they
  appear (an error message may quote a password on its own, or percent-decoded).

:func:`remember` also keeps the URI as given, so that an object pickled with its masked URI
(a Tracker in Tune's saved state) gets the real one back in the process that was given it
(:func:`unmask`). Nothing is ever written with the secret in it: a resumed search is given its
credentials again (README, "Tracking").
"""

from __future__ import annotations

import os
import re
import urllib.parse
from typing import Any, TextIO

MASK = "***"
CREDENTIAL_VARIABLES = ("MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")
"""MLflow's own credential variables whose values are secrets (the user name is not)."""
_MIN_LITERAL = 4
"""Shorter secrets are not scrubbed from free text: they would cut common words apart (their
URI forms are still masked)."""

_SECRET_WORD = re.compile(r"token|passw|pwd|secret|signature|credential|auth", re.IGNORECASE)
_SECRET_NAMES = frozenset({"key", "apikey", "accesskey", "privatekey", "accountkey", "sharedkey", "subscriptionkey",
                           "sig", "sas", "code"})
"""Parameter names that are secrets without a secret word in them (normalised: lower case,
letters and digits only). ``sig`` is an Azure SAS signature, ``code`` an OAuth grant."""
# scheme://user:password@  (the password may hold a raw '@': up to the last '@' of the authority)
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^\s/?#@:]*):(?P<password>[^\s/?#]*)@")
# http(s)://token@host: a user info with no password, where only a token makes sense
_HTTP_TOKEN = re.compile(r"(?P<scheme>\bhttps?://)(?P<user>[^\s/?#@:]+)@", re.IGNORECASE)
# ?key=value, the value up to the next pair or the end of the URI (punctuation that ends a
# sentence, "...?token=X: refused", stays outside)
_QUERY_PAIR = re.compile(r"(?P<lead>[?&;](?P<key>[^\s=&#;?]+)=)(?P<value>[^\s&#;]*?)(?=[:,.)\]'\"]*(?:[\s&#;]|$))")



def is_secret_name(name: str) -> bool:
    """Whether a query parameter called ``name`` holds a credential: its name holds a secret word
    (``access_token``, ``X-Amz-Signature``, ``password``) or is one of :data:`_SECRET_NAMES`
    (``key``, ``api-key``). A name that only contains "key" is not one (``viewStateShareKey``,
    ``keyword``): masking it would break the links ``ui`` prints."""
    return bool(_SECRET_WORD.search(name)) or re.sub(r"[^a-z0-9]", "", name.lower()) in _SECRET_NAMES


_known: dict[str, str] = {}
"""Masked URI -> the URI as given, for the URIs this process was given (never saved)."""
_literals: set[str] = set()
"""Secrets of the remembered URIs, as written and percent-decoded."""


def _mask_query(query: str) -> str:
    pairs = []
    for part in query.split("&"):
        key, equals, value = part.partition("=")
        pairs.append(f"{key}={MASK}" if equals and value and is_secret_name(key) else part)
    return "&".join(pairs)


def _credentials(uri: str) -> list[str]:
    """The password, token user info and secret query values of ``uri``, as written."""
    try:
        parts = urllib.parse.urlsplit(uri)
    except ValueError:
        return []
    found = []
    userinfo, at, _ = parts.netloc.rpartition("@")
    if at:
        user, colon, password = userinfo.partition(":")
        if colon:
            found.append(password)
        elif parts.scheme.lower() in ("http", "https"):
            found.append(user)
    for part in parts.query.split("&"):
        key, equals, value = part.partition("=")
        if equals and value and is_secret_name(key):
            found.append(value)
    return [secret for secret in found if secret]


def has_secrets(uri: str) -> bool:
    """Whether ``uri`` carries a password or token (one not masked already)."""
    return any(secret != MASK for secret in _credentials(uri))


def is_masked(uri: str) -> bool:
    """Whether ``uri`` had credentials that were masked when it was saved."""
    return MASK in _credentials(uri)


def mask_uri(uri: str) -> str:
    """``uri`` with its password, token user info and secret query values replaced by ``***``."""
    try:
        parts = urllib.parse.urlsplit(uri)
    except ValueError:
        return mask_text(uri)
    netloc = parts.netloc
    userinfo, at, hostport = netloc.rpartition("@")
    if at:
        user, colon, _ = userinfo.partition(":")
        if colon:
            netloc = f"{user}:{MASK}@{hostport}"
        elif parts.scheme.lower() in ("http", "https"):
            netloc = f"{MASK}@{hostport}"
    query = _mask_query(parts.query) if parts.query else parts.query
    if (netloc, query) == (parts.netloc, parts.query):
        return mask_text(uri)
    return mask_text(urllib.parse.urlunsplit(parts._replace(netloc=netloc, query=query)))


def remember(uri: str) -> str:
    """Note the secrets of ``uri`` (a URI this process was given), so that every later text is
    scrubbed of them and its masked form can be turned back; returns the masked form."""
    masked = mask_uri(uri)
    for secret in _credentials(uri):
        if secret == MASK:
            continue
        _literals.update({secret, urllib.parse.unquote(secret)})
    if masked != uri:
        _known[masked] = uri
    return masked


def stands_for(masked: str, uri: str) -> None:
    """In this process, ``masked`` (read back from a saved state) is ``uri``: the same store,
    given again without the saved credentials (they come from MLflow's variables)."""
    _known[masked] = uri


def unmask(uri: str) -> str:
    """The URI as given for a masked URI remembered in this process; any other URI unchanged."""
    return _known.get(uri, uri)


def without_credentials(uri: str) -> str:
    """``uri`` without its user info and secret query parameters (the credentials then come from
    MLflow's variables)."""
    parts = urllib.parse.urlsplit(uri)
    hostport = parts.netloc.rpartition("@")[2]
    query = "&".join(part for part in parts.query.split("&")
                     if part and not is_secret_name(part.partition("=")[0]))
    return urllib.parse.urlunsplit(parts._replace(netloc=hostport, query=query))


def _literal_secrets() -> set[str]:
    found = {value for name in CREDENTIAL_VARIABLES if (value := os.environ.get(name))}
    found |= _literals
    return {secret for secret in found if len(secret) >= _MIN_LITERAL and secret != MASK}


def mask_text(text: str) -> str:
    """``text`` with every credential in it replaced by ``***`` (see the module's docstring)."""
    if not text:
        return text
    text = _USERINFO.sub(lambda match: f"{match['scheme']}{match['user']}:{MASK}@", text)
    text = _HTTP_TOKEN.sub(lambda match: f"{match['scheme']}{MASK}@", text)
    text = _QUERY_PAIR.sub(
        lambda match: match["lead"] + (MASK if is_secret_name(match["key"]) and match["value"] else match["value"]),
        text)
    # The longest first: a secret that holds a shorter one is masked whole.
    for secret in sorted(_literal_secrets(), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


class MaskedStream:
    """A text stream that masks what is written to it (the process's stdout and stderr, so that
    a traceback or a library's warning that quotes a URI shows no secret either)."""

    def __init__(self, stream: TextIO):
        self._stream = stream

    def write(self, text: Any) -> int:
        if isinstance(text, str):
            text = mask_text(text)
        return self._stream.write(text)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def mask_standard_streams() -> None:
    """Mask every write to sys.stdout and sys.stderr from now on (the CLI's entry point)."""
    import sys

    if not isinstance(sys.stdout, MaskedStream):
        sys.stdout = MaskedStream(sys.stdout)
    if not isinstance(sys.stderr, MaskedStream):
        sys.stderr = MaskedStream(sys.stderr)
