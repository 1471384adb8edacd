"""The finite-difference replays: a forward's random draws recorded once and handed back."""

from __future__ import annotations

import pytest
import torch

from helpers import make_batch, tiny_model
from metaxl_tune.model.random_draws import RecordedDraws, SeededDraws, UnreplayableForward, draws_for


def logits(model, batch, params=None):
    from torch.func import functional_call

    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    if params is None:
        return model(**inputs).logits
    return functional_call(model, params, (), inputs).logits


def shifted(model, scale: float):
    generator = torch.Generator().manual_seed(3)
    return {name: param.detach() + scale * torch.randn(param.shape, generator=generator, dtype=param.dtype)
            for name, param in model.named_parameters()}


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_a_recorded_forward_draws_what_an_ordinary_one_draws(attention):
    model, batch = tiny_model(dropout=0.2, attention=attention).train(), make_batch(4, seed=1)
    torch.manual_seed(11)
    ordinary = logits(model, batch)
    torch.manual_seed(11)
    with RecordedDraws().recording():
        recorded = logits(model, batch)
    # The same masks (same draws in the same order); SDPA's math restated, so equal to rounding.
    torch.testing.assert_close(recorded, ordinary, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_replays_at_other_parameters_use_the_recorded_masks_and_draw_nothing(attention):
    model, batch = tiny_model(dropout=0.2, attention=attention).train(), make_batch(4, seed=1)
    params = shifted(model, 1e-3)
    draws = RecordedDraws()
    torch.manual_seed(11)
    with draws.recording():
        recorded = logits(model, batch)
    # What a replay must equal: the forward at the other parameters from the same generator state.
    torch.manual_seed(11)
    expected = logits(model, batch, params)
    torch.manual_seed(99)
    stream = torch.get_rng_state()
    with draws.replaying():
        replayed_same = logits(model, batch)
    with draws.replaying():
        replayed_other = logits(model, batch, params)
    assert torch.equal(replayed_same, recorded)
    torch.testing.assert_close(replayed_other, expected, rtol=1e-12, atol=1e-12)
    assert torch.equal(torch.get_rng_state(), stream)


def test_seeded_replays_redraw_the_same_masks_and_leave_the_stream_where_it_was():
    model, batch = tiny_model(dropout=0.2, attention="sdpa").train(), make_batch(4, seed=1)
    draws = SeededDraws()
    torch.manual_seed(11)
    with draws.recording():
        recorded = logits(model, batch)
    after = torch.get_rng_state()
    with draws.replaying():
        replayed = logits(model, batch)
    assert torch.equal(replayed, recorded)
    assert torch.equal(torch.get_rng_state(), after)


def test_other_random_ops_are_recorded_too():
    def forward(x):
        keep = torch.empty_like(x).bernoulli_(0.7)  # DeBERTa's StableDropout draws its mask like this
        return x * keep + torch.rand_like(x)

    draws, x = RecordedDraws(), torch.ones(3, 5, dtype=torch.float64)
    torch.manual_seed(5)
    with draws.recording():
        forward(x)
    torch.manual_seed(5)
    expected = forward(2 * x)
    with draws.replaying():
        assert torch.equal(forward(2 * x), expected)


def test_a_replay_that_draws_differently_is_refused():
    draws, x = RecordedDraws(), torch.ones(4, dtype=torch.float64)
    with draws.recording():
        torch.nn.functional.dropout(x, 0.5)
    with pytest.raises(UnreplayableForward, match="drew 0 random tensors, the recorded one 1"):
        with draws.replaying():
            pass
    with pytest.raises(UnreplayableForward, match="more than the 1 random tensors recorded"):
        with draws.replaying():
            torch.nn.functional.dropout(x, 0.5)
            torch.nn.functional.dropout(x, 0.5)


@pytest.mark.parametrize("drop", [
    lambda x: torch.nn.functional.dropout(x, 0.3),
    lambda x: torch.nn.functional.dropout(x.clone(), 0.3, inplace=True),
    lambda x: torch.dropout(x, 0.3, True),
], ids=["functional", "in-place", "aten"])
def test_every_dropout_entry_point_replays_the_recorded_mask(drop):
    draws, x = RecordedDraws(), torch.ones(6, 7, dtype=torch.float64)
    torch.manual_seed(2)
    expected = torch.nn.functional.dropout(3 * x, 0.3)
    torch.manual_seed(2)
    with draws.recording():
        recorded = drop(x)
    with draws.replaying():
        replayed = drop(3 * x)
    assert torch.equal(recorded, expected / 3) and torch.equal(replayed, expected)


def test_a_replayed_dropout_of_another_shape_is_refused():
    draws = RecordedDraws()
    with draws.recording():
        torch.nn.functional.dropout(torch.ones(2, 3), 0.5)
    with pytest.raises(UnreplayableForward, match=r"shape \(3, 2\) met a recorded mask of shape \(2, 3\)"):
        with draws.replaying():
            torch.nn.functional.dropout(torch.ones(3, 2), 0.5)


def test_a_random_op_it_cannot_record_names_the_way_out():
    draws, x = RecordedDraws(), torch.ones(4, dtype=torch.float64)
    with draws.recording():
        torch.poisson(x)
    with pytest.raises(UnreplayableForward, match="--hypergradient exact"):
        with draws.replaying():
            torch.poisson(x)


def test_masks_are_recorded_on_a_cpu_and_redrawn_from_the_seed_elsewhere():
    assert isinstance(draws_for(torch.device("cpu")), RecordedDraws)
    assert isinstance(draws_for(torch.device("cuda")), SeededDraws)
