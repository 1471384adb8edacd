"""Cheap checks that a run config fits its model, before any data is read or weights load.

``check_fit`` runs once per run, and what it learns (``ModelFit``: the model's config, depth,
RTN layers, the tokenizer's special tokens, the evaluation length) is handed on rather than
computed again: ``metaxl-tune train`` checks before the run folder changes and hands the fit to
``trainer.Run``, which hands its evaluation length to ``prepare_data``; a ``Run`` built without one
(a search trial, a bench) checks at its top. A search checks its trials' common config in the
driver before Ray starts (search/driver/preflight.py) and each trial its own sampled config.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from metaxl_tune.config import TASK_DEFAULTS, RunConfig
from metaxl_tune.model.model_config import (
    TINY, ModelError, ModelShape, check_max_length, hidden_size, model_depth, model_shape, position_limit,
    resolve_placements,
)
from metaxl_tune.model.pretrain import PRETRAINED, default_recipe, recipe_shape
from metaxl_tune.model.tokenizer import special_tokens_added

if TYPE_CHECKING:
    from transformers import PretrainedConfig


@dataclass(frozen=True)
class ModelFit:
    model_config: "ModelShape | PretrainedConfig"
    """A built-in model's shape (no transformers: a search driver checks without torch), or a
    hub or saved model's config as read; the run builds its model from ``load_model_config``."""
    depth: int
    placements: list[int]
    """Resolved RTN layer indices; empty for methods without an RTN."""
    eval_max_length: int
    """The dev/test encoding length used: ``config.eval_max_length``, capped to the model's positions."""
    special_tokens: int
    """Special tokens the model's tokenizer adds to every sequence (a real model's tokenizer is
    loaded to count them)."""

    def eval_cap_notice(self, config: RunConfig) -> str | None:
        """One line when ``eval_max_length`` was capped to the model, else None."""
        if self.eval_max_length == config.eval_max_length:
            return None
        return (f"notice: --eval-max-length {config.eval_max_length} is more than model {config.model} takes; "
                f"dev and test are encoded at {self.eval_max_length} sub-words")


def check_fit(config: RunConfig) -> ModelFit:
    """The model's config, depth and resolved RTN placements; raises a one-line error
    (``rtn_layers`` past the depth, ``max_length`` too short or too long for the model,
    ``eval_max_length`` too short)."""
    model_config = _model_config(config)
    depth = model_depth(model_config)
    placements = resolve_placements(config.rtn_layers, depth, config.model) if config.uses_rtn else []
    # tiny-pretrained's tokenizer follows the tiny one's template (<s> ... </s>).
    tokenizer_of = TINY if config.model == PRETRAINED else config.model
    special_tokens = special_tokens_added(tokenizer_of)
    check_max_length(config.max_length, model_config, special_tokens=special_tokens, model_name=config.model)
    if config.eval_max_length <= special_tokens:
        raise ModelError(
            f"--eval-max-length {config.eval_max_length}: too short; the tokenizer of {config.model} adds "
            f"{special_tokens} special tokens to every sequence, so use at least {special_tokens + 1}"
        )
    # Unlike max_length (an error when too long), the evaluation length has a task default that
    # a small model may not take (tiny's table is sized from max_length): it is capped instead.
    limit = position_limit(model_config)
    eval_length = config.eval_max_length if limit is None else min(config.eval_max_length, limit)
    return ModelFit(model_config, depth, placements, eval_length, special_tokens)


RTN_BOTTLENECK_FACTOR = 4


def rtn_bottleneck_limit(config: RunConfig, fit: ModelFit | None = None) -> tuple[int, str]:
    """The largest ``rtn_bottleneck`` that ``config.model`` takes for ``config.task``, and why
    (for messages): the RTN maps the hidden size d through r units and back, so r past a few
    times d adds nothing but memory (a huge r ends in an allocation failure). The task's
    default r is always allowed, since small models (tiny: d = 64) train with it. ``fit``
    (check_fit's result for ``config``) spares loading the model's config again."""
    model_config = fit.model_config if fit is not None else _model_config(config)
    size = hidden_size(model_config)
    limit = max(RTN_BOTTLENECK_FACTOR * size, TASK_DEFAULTS[config.task]["rtn_bottleneck"])
    return limit, f"{RTN_BOTTLENECK_FACTOR} x its hidden size {size}, or the {config.task} default if larger"


def check_value_bounds(config: RunConfig, fit: ModelFit | None = None) -> None:
    """Upper bounds on what the user asks for (flags, config files, a search's common config, an
    ablation's cells), checked before any work (``rtn_bottleneck_limit``). Not part of
    check_fit, which every trial runs: a search checks every value its space can sample before
    Ray starts instead (search/driver/preflight.py)."""
    if not config.uses_rtn:
        return
    limit, why = rtn_bottleneck_limit(config, fit)
    if config.rtn_bottleneck > limit:
        raise ModelError(f"--rtn-bottleneck {config.rtn_bottleneck}: at most {limit} for model {config.model} ({why}); lower it")


def _model_config(config: RunConfig) -> "ModelShape | PretrainedConfig":
    if config.model != PRETRAINED:
        return model_shape(config.model, max_length=config.max_length)
    # tiny-pretrained is built on first use (model/pretrain.py); its shape is fixed by its recipe,
    # so it is checked here without building it.
    return recipe_shape(default_recipe())
