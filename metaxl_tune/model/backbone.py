"""Encoders: any Hugging Face encoder by hub name or local path, or a random-init one offline.

Models are built with the configured attention (``sdpa`` by default). Fused SDPA kernels have
no double backward, so the one forward the MetaXL step differentiates twice runs under the
math kernel (metaxl_tune.model.attention); ``eager`` builds the explicit softmax(QK^T)V path.
"""

from __future__ import annotations

from typing import Callable

from torch import nn
from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification, PretrainedConfig, PreTrainedModel

from metaxl_tune.model.model_config import RANDOM_INIT, ModelError, offline_hint
# What the model's config says moved to model_config (no torch); the old release's names stay
# here too (tests/search/driver/test_moved_modules.py).
from metaxl_tune.model.model_config import (  # noqa: F401
    check_max_length, hidden_size, load_model_config, model_depth, name_is_tiny, position_limit,
)

from metaxl_tune.model.sa_head import FRESH_POOLER, PooledRobertaClassifier, uses_pooled_roberta

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
        raise ModelError(offline_hint(name)) from None
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
