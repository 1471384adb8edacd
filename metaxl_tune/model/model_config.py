"""What a model's config says, read without its weights: its shape, depth, hidden size and
position limit, the length checks against them, and where RTN placements land in its depth. The
fit check (model/fit.py) runs on these alone, so a search driver and a command refused at its
flags answer in about a second: the model classes load only where a model is built
(model/backbone.py). A built-in model's shape (``model_shape``) is known without transformers,
whose config classes import torch (about 3 s of a search driver's start)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from metaxl_tune.config import Placement

if TYPE_CHECKING:
    from transformers import PretrainedConfig

TINY = "tiny"
BASE_RANDOM = "base-random"
RANDOM_INIT = frozenset({TINY, BASE_RANDOM})
"""Models built from a config alone (no download); their tokenizer is trained on the run's text."""
TINY_MAX_LENGTH = 4096
"""tiny's position table is sized from max_length; past this a length only allocates memory."""


def _encoder_size(*, hidden: int, layers: int, heads: int, intermediate: int) -> dict[str, int]:
    """The four numbers that size an XLM-R encoder, as XLMRobertaConfig fields."""
    return dict(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads, intermediate_size=intermediate)


# xlm-roberta-base's shape (278 M parameters, 192 M of them in the 250002 x 768 embedding),
# for measuring paper-scale cost offline; randomly initialised, so its F1 means nothing.
BASE_ARCHITECTURE = dict(
    **_encoder_size(hidden=768, layers=12, heads=12, intermediate=3072),
    vocab_size=250_002, max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-5,
)

# About 0.2M parameters: XLM-R's architecture at a size that trains in seconds on a CPU.
TINY_ARCHITECTURE = dict(
    **_encoder_size(hidden=64, layers=4, heads=4, intermediate=128),
    hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
)


class ModelError(ValueError):
    """The model cannot be loaded; the message says what to pass instead."""


def offline_hint(name: str) -> str:
    return (
        f"cannot load model '{name}' from the Hugging Face hub or disk; "
        "pass --model with a local directory holding a saved model, or --model tiny for offline runs"
    )


def tiny_positions(max_length: int) -> int:
    """tiny's position table: XLM-R offsets positions by padding_idx + 1, and two rows to spare."""
    return max_length + 4


@dataclass(frozen=True)
class ModelShape:
    """What the fit checks read of a built-in model's config (the XLMRobertaConfig fields of the
    same names), known without transformers; a model is built from ``load_model_config``."""

    num_hidden_layers: int
    hidden_size: int
    max_position_embeddings: int
    pad_token_id: int = 1
    model_type: str = "xlm-roberta"


def model_shape(name: str, *, max_length: int) -> "ModelShape | PretrainedConfig":
    """A model's shape for the fit checks: a built-in one's from its constants (no transformers,
    no torch), any other's config as ``load_model_config`` reads it."""
    if name == TINY:
        return ModelShape(TINY_ARCHITECTURE["num_hidden_layers"], TINY_ARCHITECTURE["hidden_size"],
                          max_position_embeddings=tiny_positions(max_length))
    if name == BASE_RANDOM:
        return ModelShape(BASE_ARCHITECTURE["num_hidden_layers"], BASE_ARCHITECTURE["hidden_size"],
                          max_position_embeddings=BASE_ARCHITECTURE["max_position_embeddings"])
    return load_model_config(name, max_length=max_length)


def load_model_config(name: str, *, max_length: int, vocab_size: int = 8) -> PretrainedConfig:
    """The model's config alone (cheap: no weights), so placements are checked before any work."""
    from transformers import AutoConfig, XLMRobertaConfig

    if name == TINY:
        return XLMRobertaConfig(
            vocab_size=vocab_size,
            max_position_embeddings=tiny_positions(max_length),
            pad_token_id=1,
            bos_token_id=0,
            eos_token_id=2,
            **TINY_ARCHITECTURE,
        )
    if name == BASE_RANDOM:
        return XLMRobertaConfig(pad_token_id=1, bos_token_id=0, eos_token_id=2, **BASE_ARCHITECTURE)
    from metaxl_tune.model.hub_quiet import quiet_hub

    try:
        with quiet_hub(name) as hub:
            return AutoConfig.from_pretrained(name, **hub)
    except (OSError, ValueError) as error:
        if Path(name).exists():
            raise ModelError(f"--model {name}: not a saved Hugging Face model ({error})".splitlines()[0]) from None
        raise ModelError(offline_hint(name)) from None


def position_limit(model_config: "ModelShape | PretrainedConfig") -> int | None:
    """The longest sequence the model's position embeddings can number (None: no limit known)."""
    total = getattr(model_config, "max_position_embeddings", None)
    if not isinstance(total, int):
        return None
    # RoBERTa-family models (XLM-R) number positions from padding_idx + 1, so the first
    # pad_token_id + 1 rows are never used for tokens: XLM-R base's 514 rows fit 512 tokens.
    if "roberta" in model_config.model_type or model_config.model_type == "camembert":
        total -= (model_config.pad_token_id or 0) + 1
    return total


def check_max_length(
    max_length: int, model_config: "ModelShape | PretrainedConfig", *, special_tokens: int, model_name: str,
) -> None:
    """``max_length`` must leave room for one word piece after the tokenizer's special tokens
    and fit the model's position embeddings; otherwise truncation cannot honour it and the
    embeddings index past their table."""
    if max_length <= special_tokens:
        raise ModelError(
            f"--max-length {max_length}: too short; the tokenizer of {model_name} adds {special_tokens} "
            f"special tokens to every sequence, so use at least {special_tokens + 1}"
        )
    if name_is_tiny(model_name):
        if max_length > TINY_MAX_LENGTH:
            raise ModelError(f"--max-length {max_length}: model {model_name} sizes its position table from it; "
                             f"use at most {TINY_MAX_LENGTH}")
        return
    limit = position_limit(model_config)
    if limit is not None and max_length > limit:
        raise ModelError(
            f"--max-length {max_length}: model {model_name} has position embeddings for {limit} tokens; use at most {limit}"
        )


def name_is_tiny(name: str) -> bool:
    # The tiny model's position table is sized from max_length (load_model_config).
    return name == TINY


def model_depth(model_config: "ModelShape | PretrainedConfig") -> int:
    for key in ("num_hidden_layers", "n_layers", "num_layers"):
        if hasattr(model_config, key):
            return int(getattr(model_config, key))
    raise ModelError(f"cannot tell the depth of a {model_config.model_type} model; use an encoder such as XLM-R or mBERT")


def hidden_size(model_config: "ModelShape | PretrainedConfig") -> int:
    for key in ("hidden_size", "dim", "d_model"):
        if hasattr(model_config, key):
            return int(getattr(model_config, key))
    raise ModelError(f"cannot tell the hidden size of a {model_config.model_type} model")


def resolve_placements(placements: Sequence[Placement], depth: int, model_name: str) -> list[int]:
    """Map config placements (ints, 'middle', 'last') to layer indices 0..depth, validated."""
    resolved = []
    for placement in placements:
        index = {"last": depth, "middle": depth // 2}.get(placement, placement)
        if not isinstance(index, int) or not 0 <= index <= depth:
            raise ValueError(
                f"rtn_layers: layer {placement} is past the depth of model {model_name} "
                f"({depth} layers); use 0..{depth}, middle or last"
            )
        resolved.append(index)
    if len(set(resolved)) != len(resolved):
        raise ValueError(f"rtn_layers: {list(placements)} name the same layer twice for a {depth}-layer model")
    return sorted(resolved)
