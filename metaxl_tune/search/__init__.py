"""Hyperparameter search over RunConfig: YAML search spaces (this package imports no Ray/MLflow)."""

from metaxl_tune.search.placement import placement_label, resolve_placement
from metaxl_tune.search.space import Parameter, SearchSpace, SpaceError, load_space, shipped_spaces

__all__ = [
    "Parameter",
    "SearchSpace",
    "SpaceError",
    "load_space",
    "placement_label",
    "resolve_placement",
    "shipped_spaces",
]
