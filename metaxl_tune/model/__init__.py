"""Backbone encoders, the representation transformation network (RTN) and its placement."""

from metaxl_tune.model.backbone import ModelError, load_backbone, load_model_config, model_depth
from metaxl_tune.model.rtn import RTN, RTNBank, resolve_placements

__all__ = [
    "RTN",
    "RTNBank",
    "ModelError",
    "load_backbone",
    "load_model_config",
    "model_depth",
    "resolve_placements",
]
