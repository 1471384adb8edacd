"""microsoft/MetaXL's main network, restated in the tests (``models.py``) with the model's own
submodules: the embeddings, each encoder layer called on the reference's extended mask, the
classifier. None of metaxl-tune's forward code is used, so the bi-level tests
(test_bilevel, test_bilevel_baselines, test_multi_source_reference) compare ours against an
independent statement.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def ext_mask(mask):
    """models.py get_ext_mask: 0 where attended, -10000 where padded."""
    return (1.0 - mask[:, None, None, :].to(torch.float64)) * -10000.0


def ce(logits, labels):
    """mlt.py masked_cross_entropy: summed over labelled positions, divided by their count."""
    flat = labels.reshape(-1)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), flat, ignore_index=-100, reduction="sum") / (flat != -100).sum()


def hidden_states(model, batch):
    """The main_net's hidden states: h[0] the embeddings, h[k] after encoder layer k."""
    mask = ext_mask(batch["attention_mask"])
    states = [model.roberta.embeddings(input_ids=batch["input_ids"])]
    for layer in model.roberta.encoder.layer:
        states.append(layer(states[-1], mask))
    return states


def forward_tail(model, k, hidden, mask):
    """models.py forward_tail(k, x): encoder layers k..L (1-based), i.e. the ones above placement k-1."""
    for layer in model.roberta.encoder.layer[k - 1:]:
        hidden = layer(hidden, mask)
    return hidden


def classifier(model, sequence):
    """models.py forward_classifier for token classification: dropout, then the linear layer."""
    return model.classifier(model.dropout(sequence))
