"""Cheap checks that a run config fits its model, before any data is read or weights load.

A search runs them in the driver before Ray starts; a run at the top of ``trainer.Run``.
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import PretrainedConfig

from metaxl_tune.config import RunConfig
from metaxl_tune.model.backbone import check_max_length, load_model_config, model_depth
from metaxl_tune.model.rtn import resolve_placements
from metaxl_tune.model.tokenizer import special_tokens_added


@dataclass(frozen=True)
class ModelFit:
    model_config: PretrainedConfig
    depth: int
    placements: list[int]
    """Resolved RTN layer indices; empty for methods without an RTN."""


def check_fit(config: RunConfig) -> ModelFit:
    """The model's config, depth and resolved RTN placements; raises a one-line error
    (``rtn_layers`` past the depth, ``max_length`` too short or too long for the model)."""
    model_config = load_model_config(config.model, max_length=config.max_length)
    depth = model_depth(model_config)
    placements = resolve_placements(config.rtn_layers, depth, config.model) if config.uses_rtn else []
    check_max_length(
        config.max_length, model_config, special_tokens=special_tokens_added(config.model), model_name=config.model
    )
    return ModelFit(model_config, depth, placements)
