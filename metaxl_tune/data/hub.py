"""WikiAnn from the Hugging Face hub (dataset ``unimelb-nlp/wikiann``, config = language code).

Offline, ``datasets.load_dataset`` retries for about half a minute before it gives up, so the
hub is probed first with one short request and an unreachable hub fails at once. With
``HF_HUB_OFFLINE=1`` the probe is skipped and a cached copy is used when there is one.
"""

from __future__ import annotations

import datasets
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError

from metaxl_tune.data.errors import DataError
from metaxl_tune.data.streams import SplitStreams
from metaxl_tune.data.tables import splits_from_dataset_dict

WIKIANN = "unimelb-nlp/wikiann"
_PROBE_TIMEOUT_S = 5.0


def load_wikiann(language: str) -> SplitStreams:
    if not datasets.config.HF_HUB_OFFLINE and not _hub_reachable():
        raise DataError(_unreachable(language))
    try:
        dataset_dict = datasets.load_dataset(WIKIANN, language)
    except ConnectionError:
        raise DataError(_unreachable(language)) from None
    except ValueError as error:
        if "BuilderConfig" not in str(error):
            raise
        raise DataError(
            f"{WIKIANN} has no config '{language}'; WikiAnn configs are language codes such as tk, qu or en"
        ) from None
    return splits_from_dataset_dict(dataset_dict, f"{WIKIANN} ({language})")


def _hub_reachable() -> bool:
    try:
        HfApi().dataset_info(WIKIANN, timeout=_PROBE_TIMEOUT_S)
    except HfHubHTTPError:
        # The hub answered (gated, rate-limited, ...): load_dataset reports that better.
        return True
    except Exception:
        # Network failures surface as the HTTP backend's own types, which vary by version.
        return False
    return True


def _unreachable(language: str) -> str:
    cached = " and HF_HUB_OFFLINE is set but nothing is cached" if datasets.config.HF_HUB_OFFLINE else ""
    return (
        f"cannot reach the Hugging Face hub for {WIKIANN} ({language}){cached}; pass --data DIR with "
        f"<DIR>/{language}/{{train,dev,test}} in the panx layout, or --data synthetic"
    )
