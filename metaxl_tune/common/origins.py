"""Which name an error gives a value: the flag the user typed, the config file that set it, or the
environment variable that supplied it when the flag was not given (a user who never typed
``--tracking-uri`` looks for the fault in ``$MLFLOW_TRACKING_URI``). ``flag_for_field`` is the one
place a config error becomes the flag at fault."""

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


COMMAND_LINE = "options"
"""The origin a config error carries for values a command's flags gave (``config.build_config``'s
``origin``): it names no file, so ``flag_for_field`` drops it."""


def flag_for_field(message: str, given: object, origin: str = COMMAND_LINE) -> str:
    """The one translator from a config or model-fit error to what the user changes, for every
    command (train, search, ablate).

    ``message`` is ``[<origin>: ]<field>: <problem>``: a config error (``origin`` is the config
    file, or COMMAND_LINE for values built from flags) or a model-fit error (no origin). A field
    the command line gave (``given``: its field names) becomes its flag, ``--<field>: <problem>``
    (an index into a list field is kept: ``--rtn-layers.1``); the file's name stays on anything
    else, and the command-line origin, which names no file, is dropped."""
    field, _, rest = message.removeprefix(f"{origin}: ").partition(": ")
    name = field.split(".")[0]
    if rest and name in given:
        return f"--{name.replace('_', '-')}{field[len(name):]}: {rest}"
    return message.removeprefix(f"{COMMAND_LINE}: ")
