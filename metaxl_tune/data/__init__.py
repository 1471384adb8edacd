"""Data layer: NER and SA loaders (WikiAnn hub, local directories, synthetic), sampling.

Every loader returns `SplitStreams` (`open_splits`: each split read on demand, so a run holds
the examples it uses, not the file; `load_splits` reads them into `Splits` of lists) of
`NerExample` or `SaExample`, and reports bad data as a
`DataError` whose message is one line naming the file, the line and what to change.
May import common and config; never model (the tokenizer's work is train/prepare.py).
"""

from metaxl_tune.data.errors import DataError
from metaxl_tune.data.examples import NER_LABELS, SA_LABELS, NerExample, SaExample, Splits
from metaxl_tune.data.loading import data_fingerprint, load_splits, open_splits
from metaxl_tune.data.sampling import sample, sample_indices
from metaxl_tune.data.streams import ExampleStream, SplitStreams

__all__ = [
    "NER_LABELS",
    "SA_LABELS",
    "DataError",
    "ExampleStream",
    "NerExample",
    "SaExample",
    "SplitStreams",
    "Splits",
    "data_fingerprint",
    "load_splits",
    "open_splits",
    "sample",
    "sample_indices",
]
