"""Which name an error gives a value: the flag the user typed, or the environment variable that
supplied it when the flag was not given (a user who never typed ``--tracking-uri`` looks for
the fault in ``$MLFLOW_TRACKING_URI``)."""

from __future__ import annotations

import os

TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
RAY_ADDRESS_ENV = "RAY_ADDRESS"
RUNS_ENV = "METAXL_TUNE_RUNS"  # = paths.RUNS_ENV
CACHE_ENV = "METAXL_TUNE_CACHE"


def named(flag: str, given: object, variable: str) -> str:
    """``flag`` when the user gave it (``given`` is not None); ``$variable`` when the environment
    supplied the value instead; else ``flag`` (a built-in default, changed by giving the flag)."""
    if given is None and os.environ.get(variable):
        return f"${variable}"
    return flag


def tracking_uri_named(given: str | None) -> str:
    """The flag, else $MLFLOW_TRACKING_URI, else $METAXL_TUNE_RUNS (the default store lives in
    the runs folder it moves)."""
    if given is None and not os.environ.get(TRACKING_URI_ENV) and os.environ.get(RUNS_ENV):
        return f"${RUNS_ENV}"
    return named("--tracking-uri", given, TRACKING_URI_ENV)


def address_named(given: str | None) -> str:
    return named("--address", given, RAY_ADDRESS_ENV)


def storage_named(given: str | None) -> str:
    return named("--storage", given, RUNS_ENV)


def flag_for_field(message: str, given: object, origin: str = "options") -> str:
    """A config error ``<origin>: <field>: <problem>`` about a field the command line gave
    (``given``: its field names) as ``--<field>: <problem>``; any other message unchanged."""
    field, _, rest = message.removeprefix(f"{origin}: ").partition(": ")
    name = field.split(".")[0]
    if rest and name in given:
        return f"--{name.replace('_', '-')}{field[len(name):]}: {rest}"
    return message
