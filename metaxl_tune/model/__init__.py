"""Backbone encoders, tokenizers, the representation transformation network (RTN), its placement and the
fit checks of a config against a model. May import common, config and data (the synthetic text that
pre-trains tiny-pretrained)."""

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
