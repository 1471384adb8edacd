"""The SA head is the reference's: the checkpoint's pooler, dropout, a new linear layer.

The restatement (pooler = tanh(dense(h[:, 0])), then the linear layer; dropout is the identity
in eval mode) uses only the weights, none of metaxl-tune's or transformers' head code.
"""

from __future__ import annotations

import pytest
import torch
from transformers import XLMRobertaForMaskedLM
from transformers.models.xlm_roberta.modeling_xlm_roberta import XLMRobertaPooler

from helpers import make_batch, tiny_model
from metaxl_tune.model.backbone import load_backbone
from metaxl_tune.model.model_config import load_model_config
from metaxl_tune.model.sa_head import FRESH_POOLER, PooledRobertaClassifier
from metaxl_tune.model.tail import EncoderSplit


def restated_head(model, hidden: torch.Tensor) -> torch.Tensor:
    pooler, classifier = model.roberta.pooler.dense, model.classifier
    pooled = torch.tanh(hidden[:, 0] @ pooler.weight.T + pooler.bias)
    return pooled @ classifier.weight.T + classifier.bias


def save_masked_lm(directory, *, with_pooler: bool) -> XLMRobertaForMaskedLM:
    """A tiny checkpoint shaped like xlm-roberta-base's: a masked-LM model, with the pooler's
    weights under ``roberta.pooler.dense`` when asked."""
    torch.manual_seed(3)
    config = load_model_config("tiny", max_length=16, vocab_size=60)
    model = XLMRobertaForMaskedLM(config)
    if with_pooler:
        model.roberta.pooler = XLMRobertaPooler(config)
        torch.nn.init.normal_(model.roberta.pooler.dense.bias)  # not the zeros a fresh pooler gets
    model.save_pretrained(directory)
    return model


def load_sa(directory, log=None):
    config = load_model_config(str(directory), max_length=16)
    return load_backbone(str(directory), config, task="sa", num_labels=2, attention="eager", log=log)


def test_sa_model_loads_the_pooler_of_the_checkpoint(tmp_path):
    saved = save_masked_lm(tmp_path, with_pooler=True)
    lines: list[str] = []
    model = load_sa(tmp_path, log=lines.append)
    assert isinstance(model, PooledRobertaClassifier)
    for name in ("weight", "bias"):
        assert torch.equal(getattr(model.roberta.pooler.dense, name), getattr(saved.roberta.pooler.dense, name))
    assert lines == []


def test_a_checkpoint_without_pooler_gets_a_fresh_one_and_says_so(tmp_path):
    save_masked_lm(tmp_path, with_pooler=False)
    lines: list[str] = []
    model = load_sa(tmp_path, log=lines.append)
    assert lines == [FRESH_POOLER]
    assert torch.equal(model.roberta.pooler.dense.bias, torch.zeros(model.config.hidden_size))


def test_forward_is_pooler_dropout_linear_on_the_first_token(tmp_path):
    save_masked_lm(tmp_path, with_pooler=True)
    model = load_sa(tmp_path).to(torch.float64).eval()
    batch = make_batch(3, seed=4, task="sa", num_labels=2)
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    hidden = model.roberta(**inputs).last_hidden_state
    torch.testing.assert_close(model(**inputs).logits, restated_head(model, hidden), rtol=0, atol=1e-9)


def test_dropout_acts_on_the_pooled_vector():
    model = tiny_model(task="sa", num_labels=2, dropout=0.5).train()
    seen = []
    model.dropout.register_forward_hook(lambda _module, args, _out: seen.append(args[0].shape))
    batch = make_batch(3, seed=5, task="sa", num_labels=2)
    model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    assert seen == [torch.Size([3, model.config.hidden_size])]


@pytest.mark.parametrize("placement", [4, 2])
def test_tail_applies_pooler_dropout_linear_to_a_given_hidden_state(placement):
    # An RTN at the last layer changes h before the head: the tail must run the pooler on it.
    model = tiny_model(task="sa", num_labels=2).eval()
    batch = make_batch(3, seed=6, task="sa", num_labels=2)
    split = EncoderSplit(model)
    generator = torch.Generator().manual_seed(7)
    state = split.states(batch, [placement])[placement]
    moved = state + torch.randn(state.shape, generator=generator, dtype=state.dtype)
    logits = split.tail_logits(moved, placement, batch)
    torch.testing.assert_close(logits, restated_head(model, split.tail_states(moved, placement, batch)),
                               rtol=0, atol=1e-9)
    if placement == 4:  # after the last layer the tail is the head alone
        torch.testing.assert_close(logits, restated_head(model, moved), rtol=0, atol=1e-9)
