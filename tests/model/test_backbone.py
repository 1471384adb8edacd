"""Offline model shapes: base-random is xlm-roberta-base's architecture, built without a download."""

from __future__ import annotations

import torch

from metaxl_tune.model.backbone import load_backbone
from metaxl_tune.model.model_config import load_model_config


def test_base_random_has_xlm_roberta_base_shape_and_parameter_count():
    config = load_model_config("base-random", max_length=200)
    shape = (config.hidden_size, config.num_hidden_layers, config.num_attention_heads, config.intermediate_size,
             config.vocab_size, config.max_position_embeddings)
    assert shape == (768, 12, 12, 3072, 250_002, 514)
    with torch.device("meta"):  # shapes only: no 1 GB of random weights
        model = load_backbone("base-random", config, task="ner", num_labels=7)
    assert model.config._attn_implementation == "sdpa"
    total = sum(p.numel() for p in model.parameters())
    embedding = model.base_model.embeddings.word_embeddings.weight.numel()
    assert round(total / 1e6) == 277 and round(embedding / 1e6) == 192
