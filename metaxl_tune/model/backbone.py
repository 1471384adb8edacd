"""Encoders: any Hugging Face encoder by hub name or local path, or a random-init one offline.

Models are built with the configured attention (``sdpa`` by default). Fused SDPA kernels have
no double backward, so the one forward the MetaXL step differentiates twice runs under the
math kernel (metaxl_tune.model.attention); ``eager`` builds the explicit softmax(QK^T)V path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    PretrainedConfig,
    PreTrainedModel,
    XLMRobertaConfig,
)

from metaxl_tune.model.sa_head import FRESH_POOLER, PooledRobertaClassifier, uses_pooled_roberta

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


def _offline_hint(name: str) -> str:
    return (
        f"cannot load model '{name}' from the Hugging Face hub or disk; "
        "pass --model with a local directory holding a saved model, or --model tiny for offline runs"
    )


def load_model_config(name: str, *, max_length: int, vocab_size: int = 8) -> PretrainedConfig:
    """The model's config alone (cheap: no weights), so placements are checked before any work."""
    if name == TINY:
        return XLMRobertaConfig(
            vocab_size=vocab_size,
            max_position_embeddings=max_length + 4,  # XLM-R offsets positions by padding_idx + 1
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
        raise ModelError(_offline_hint(name)) from None


def position_limit(model_config: PretrainedConfig) -> int | None:
    """The longest sequence the model's position embeddings can number (None: no limit known)."""
    total = getattr(model_config, "max_position_embeddings", None)
    if not isinstance(total, int):
        return None
    # RoBERTa-family models (XLM-R) number positions from padding_idx + 1, so the first
    # pad_token_id + 1 rows are never used for tokens: XLM-R base's 514 rows fit 512 tokens.
    if "roberta" in model_config.model_type or model_config.model_type == "camembert":
        total -= (model_config.pad_token_id or 0) + 1
    return total


def check_max_length(max_length: int, model_config: PretrainedConfig, *, special_tokens: int, model_name: str) -> None:
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


def model_depth(model_config: PretrainedConfig) -> int:
    for key in ("num_hidden_layers", "n_layers", "num_layers"):
        if hasattr(model_config, key):
            return int(getattr(model_config, key))
    raise ModelError(f"cannot tell the depth of a {model_config.model_type} model; use an encoder such as XLM-R or mBERT")


def load_backbone(
    name: str, model_config: PretrainedConfig, *, task: str, num_labels: int, attention: str = "sdpa",
    log: Callable[[str], None] | None = None,
) -> PreTrainedModel:
    """Encoder plus task head: token classification for NER, sequence classification for SA.

    SA follows the reference (model/sa_head.py): the checkpoint's pooler, dropout, a new linear
    layer. XLM-R/RoBERTa get ``PooledRobertaClassifier``, BERT its transformers class (the same
    shape); other encoders keep their transformers sequence-classification head. ``log`` hears
    one line when the checkpoint has no pooler weights and a fresh one is used.
    """
    if task == "ner":
        head = AutoModelForTokenClassification
    elif uses_pooled_roberta(model_config):
        head = PooledRobertaClassifier
    else:
        head = AutoModelForSequenceClassification
    model_config.num_labels = num_labels
    if name in RANDOM_INIT:
        if head is PooledRobertaClassifier:
            return head._from_config(model_config, attn_implementation=attention)
        return head.from_config(model_config, attn_implementation=attention)
    from transformers import logging as hf_logging

    # Every checkpoint loaded here gets a new task head (and a pretraining checkpoint drops its
    # MLM head): transformers says so in a multi-line "LOAD REPORT" table with ANSI colour
    # codes, a warning of its own logger, whatever the output is. Its warnings are held back for
    # the load; what in the report is worth acting on is said below in one plain line.
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    from metaxl_tune.model.hub_quiet import quiet_hub

    try:
        with quiet_hub(name) as hub:
            model, loading = head.from_pretrained(
                name, config=model_config, attn_implementation=attention, output_loading_info=True, **hub
            )
    except OSError:
        raise ModelError(_offline_hint(name)) from None
    finally:
        hf_logging.set_verbosity(verbosity)
    if log is not None:
        if task == "sa" and any(".pooler." in key for key in loading["missing_keys"]):
            log(FRESH_POOLER)
        fresh = fresh_encoder_weights(model, loading["missing_keys"])
        if fresh:
            shown = ", ".join(fresh[:3]) + (", ..." if len(fresh) > 3 else "")
            log(f"notice: {len(fresh)} encoder weights of model {name} are not in its checkpoint and start "
                f"from random values ({shown}); check that --model names the encoder you mean")
    return model


def fresh_encoder_weights(model: PreTrainedModel, missing_keys: list[str]) -> list[str]:
    """The encoder's weights (not the new task head's, nor the SA pooler's, said on its own)
    that the checkpoint did not hold: a checkpoint of another architecture or a damaged one."""
    prefix = f"{model.base_model_prefix}."
    return sorted(key for key in missing_keys if key.startswith(prefix) and ".pooler." not in key)


def encoder_modules(model: PreTrainedModel) -> tuple[nn.Module, nn.ModuleList]:
    """The embedding module and the list of encoder layers, where RTNs are hooked."""
    base = model.base_model
    embeddings = getattr(base, "embeddings", None)
    for path in ("encoder.layer", "transformer.layer", "encoder.layers", "layers"):
        module: object = base
        for attribute in path.split("."):
            module = getattr(module, attribute, None)
        if isinstance(module, nn.ModuleList) and embeddings is not None:
            return embeddings, module
    raise ModelError(
        f"cannot find the embeddings and encoder layers of {type(model).__name__}; "
        "RTN placement supports BERT-, RoBERTa/XLM-R- and DistilBERT-style encoders"
    )


def hidden_size(model_config: PretrainedConfig) -> int:
    for key in ("hidden_size", "dim", "d_model"):
        if hasattr(model_config, key):
            return int(getattr(model_config, key))
    raise ModelError(f"cannot tell the hidden size of a {model_config.model_type} model")
