"""Encoders: any Hugging Face encoder by hub name or local path, or a tiny random-init one.

Models are always built with eager attention: the bi-level step differentiates through a
gradient (create_graph=True), and PyTorch's fused SDPA kernels have no double backward.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    PretrainedConfig,
    PreTrainedModel,
    XLMRobertaConfig,
)

TINY = "tiny"

# About 0.2M parameters: XLM-R's architecture at a size that trains in seconds on a CPU.
TINY_ARCHITECTURE = dict(
    hidden_size=64,
    num_hidden_layers=4,
    num_attention_heads=4,
    intermediate_size=128,
    hidden_dropout_prob=0.1,
    attention_probs_dropout_prob=0.1,
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
    try:
        return AutoConfig.from_pretrained(name)
    except (OSError, ValueError) as error:
        if Path(name).exists():
            raise ModelError(f"--model {name}: not a saved Hugging Face model ({error})".splitlines()[0]) from None
        raise ModelError(_offline_hint(name)) from None


def model_depth(model_config: PretrainedConfig) -> int:
    for key in ("num_hidden_layers", "n_layers", "num_layers"):
        if hasattr(model_config, key):
            return int(getattr(model_config, key))
    raise ModelError(f"cannot tell the depth of a {model_config.model_type} model; use an encoder such as XLM-R or mBERT")


def load_backbone(
    name: str, model_config: PretrainedConfig, *, task: str, num_labels: int
) -> PreTrainedModel:
    """Encoder plus task head: token classification for NER, sequence classification for SA."""
    head = AutoModelForTokenClassification if task == "ner" else AutoModelForSequenceClassification
    model_config.num_labels = num_labels
    if name == TINY:
        return head.from_config(model_config, attn_implementation="eager")
    from transformers import logging as hf_logging

    # tiny-pretrained (a directory with the pretrain recipe) always drops its MLM head and adds a
    # task head: transformers' report of those weights says nothing the user can act on.
    quiet = (Path(name) / "recipe.json").is_file()
    verbosity = hf_logging.get_verbosity()
    if quiet:
        hf_logging.set_verbosity_error()
    try:
        return head.from_pretrained(name, config=model_config, attn_implementation="eager")
    except OSError:
        raise ModelError(_offline_hint(name)) from None
    finally:
        hf_logging.set_verbosity(verbosity)


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
