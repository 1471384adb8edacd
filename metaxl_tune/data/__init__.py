"""Data layer: NER and SA loaders (WikiAnn hub, local directories, synthetic), sampling.

Every loader returns `Splits` of `NerExample` or `SaExample` and reports bad data as a
`DataError` whose message is one line naming the file, the line and what to change.
"""

from metaxl_tune.data.errors import DataError
from metaxl_tune.data.examples import NER_LABELS, SA_LABELS, NerExample, SaExample, Splits
from metaxl_tune.data.loading import data_fingerprint, load_splits
from metaxl_tune.data.sampling import sample

__all__ = [
    "NER_LABELS",
    "SA_LABELS",
    "DataError",
    "NerExample",
    "SaExample",
    "Splits",
    "data_fingerprint",
    "load_splits",
    "sample",
]
