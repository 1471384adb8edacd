"""Loading from the Hugging Face hub without its retry chatter, and without its retries when
the hub cannot be reached at all.

When the hub cannot be reached, huggingface_hub logs a warning for every failed request and
every back-off ("'[Errno -2] Name or service not known' thrown while requesting HEAD ...",
"Retrying in 8s [Retry 4/5]."), a dozen lines and about half a minute before our one-line
"cannot load model". Those lines name nothing the user can change; the one line does. So the
hub is probed once per process with one short request (as data/hub.py does for WikiAnn): an
unreachable hub, like a local directory, is loaded with ``local_files_only``, which reads a
copy cached earlier at once, or fails at once.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from pathlib import Path
from typing import Any, Iterator

HUB_LOGGERS = ("huggingface_hub",)
_PROBE_TIMEOUT_S = 5.0


@functools.lru_cache(maxsize=None)
def hub_reachable(endpoint: str) -> bool:
    """Does anything answer at ``endpoint``? Any HTTP answer counts (an error status is the
    hub's to explain); a failed name lookup, connection or timeout does not."""
    from huggingface_hub.utils import get_session

    try:
        get_session().head(endpoint, timeout=_PROBE_TIMEOUT_S)
    except Exception:  # noqa: BLE001 - network failures come as the HTTP backend's own types
        return False
    return True


def load_options(name: str) -> dict[str, Any]:
    """What ``from_pretrained`` is given for ``name``: local files only for a local directory,
    in offline mode, or when the hub does not answer."""
    from huggingface_hub import constants

    if Path(name).exists() or constants.HF_HUB_OFFLINE or not hub_reachable(constants.ENDPOINT):
        return {"local_files_only": True}
    return {}


@contextlib.contextmanager
def quiet_hub(name: str) -> Iterator[dict[str, Any]]:
    """Inside: the hub's warnings are dropped (errors still show). Yields ``load_options(name)``
    for the ``from_pretrained`` call."""
    loggers = [logging.getLogger(logger_name) for logger_name in HUB_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield load_options(name)
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
