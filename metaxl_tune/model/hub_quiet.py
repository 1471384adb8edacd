"""Loading from the Hugging Face hub without its retry chatter.

When the hub cannot be reached, huggingface_hub logs a warning for every failed request and
every back-off ("'[Errno -2] Name or service not known' thrown while requesting HEAD ...",
"Retrying in 8s [Retry 4/5]."), a dozen lines before our one-line "cannot load model". Those
lines name nothing the user can change; the one line does. A local directory needs no hub at
all, so it is loaded offline (no request is tried).
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Iterator

HUB_LOGGERS = ("huggingface_hub",)


@contextlib.contextmanager
def quiet_hub(name: str) -> Iterator[None]:
    """Inside: the hub's warnings are dropped (errors still show), and a local ``name`` is
    loaded with HF_HUB_OFFLINE set."""
    loggers = [logging.getLogger(logger_name) for logger_name in HUB_LOGGERS]
    levels = [logger.level for logger in loggers]
    offline_before = os.environ.get("HF_HUB_OFFLINE")
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    local = Path(name).exists()
    if local:
        os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
        if local:
            if offline_before is None:
                os.environ.pop("HF_HUB_OFFLINE", None)
            else:
                os.environ["HF_HUB_OFFLINE"] = offline_before
