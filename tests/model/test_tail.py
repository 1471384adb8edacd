"""EncoderSplit: the lower pass and the tail passes together are the model's own forward."""

from __future__ import annotations

import pytest
import torch

from helpers import make_batch, tiny_model
from metaxl_tune.model.tail import EncoderSplit, call_with_params


@pytest.mark.parametrize("task", ["ner", "sa"])
def test_states_and_tails_reproduce_the_full_forward(task):
    model = tiny_model(task=task, num_labels=2 if task == "sa" else 7)
    batch = make_batch(3, seed=0, task=task, num_labels=2 if task == "sa" else 7)
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    full = model(**inputs, output_hidden_states=True)
    split = EncoderSplit(model)
    states = split.states(batch, [0, 2, 4])
    for placement in (0, 2, 4):
        torch.testing.assert_close(states[placement], full.hidden_states[placement])
        torch.testing.assert_close(split.tail_logits(states[placement], placement, batch), full.logits)
    # the model is whole again afterwards
    assert len(model.roberta.encoder.layer) == 4 and model.roberta.embeddings is split.embeddings
    torch.testing.assert_close(model(**inputs).logits, full.logits)


def test_lower_pass_stops_at_the_highest_placement():
    model = tiny_model()
    calls = []
    for index, layer in enumerate(model.roberta.encoder.layer):
        layer.register_forward_hook(lambda *_args, index=index: calls.append(index))
    EncoderSplit(model).states(make_batch(2, seed=1), [0, 2])
    assert calls == [0, 1]


def test_call_with_params_runs_a_split_forward_on_other_weights():
    model, other = tiny_model(seed=0), tiny_model(seed=5)
    batch = make_batch(2, seed=2)
    split = EncoderSplit(model)

    def logits_from_layer_two():
        return split.tail_logits(split.states(batch, [2])[2], 2, batch)

    expected = other(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    torch.testing.assert_close(call_with_params(model, dict(other.named_parameters()), logits_from_layer_two), expected)
    assert not torch.allclose(logits_from_layer_two(), expected)
