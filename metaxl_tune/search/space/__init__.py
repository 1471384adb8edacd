"""What a search tries, and in which order: the space file, placements, studies, samplers, pruning.

Within search, may import only search.faults.
"""

from metaxl_tune.search.space.placement import placement_label, resolve_placement
from metaxl_tune.search.space.schema import Parameter, SearchSpace, SpaceError, load_space, shipped_spaces

__all__ = [
    "Parameter",
    "SearchSpace",
    "SpaceError",
    "load_space",
    "placement_label",
    "resolve_placement",
    "shipped_spaces",
]
