"""The RTN: shape of g_phi, its placement, and hooks that act only on source forwards."""

from __future__ import annotations

import pytest
import torch

from helpers import attach_bank, make_batch, tiny_model
from metaxl_tune.model.model_config import resolve_placements
from metaxl_tune.model.rtn import RTN, RTNBank


def test_rtn_is_a_residual_bottleneck():
    rtn = RTN(6, 3).double()
    hidden = torch.randn(2, 4, 6, dtype=torch.float64)
    expected = hidden + rtn.up(torch.relu(rtn.down(hidden)))
    torch.testing.assert_close(rtn(hidden), expected)
    assert rtn.down.weight.shape == (3, 6) and rtn.up.weight.shape == (6, 3)


def test_gated_rtn_scales_its_output_by_a_sigmoid_of_the_extra_unit():
    rtn = RTN(6, 3, gate=True).double()
    hidden = torch.randn(2, 6, dtype=torch.float64)
    out = rtn.up(torch.relu(rtn.down(hidden)))
    torch.testing.assert_close(rtn(hidden), hidden + torch.sigmoid(out[..., -1:]) * out[..., :-1])


def test_detached_input_keeps_the_residual_gradient_path():
    rtn = RTN(4, 2, detach_input=True).double()
    hidden = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(rtn(hidden).sum(), hidden)
    torch.testing.assert_close(grad, torch.ones_like(hidden))


@pytest.mark.parametrize(
    "placements, expected", [(["last"], [12]), (["middle"], [6]), ([0, "last"], [0, 12]), ([12, 3], [3, 12])]
)
def test_placements_resolve_against_depth(placements, expected):
    assert resolve_placements(placements, 12, "xlm-roberta-base") == expected


def test_placement_past_the_depth_names_the_model_and_range():
    with pytest.raises(ValueError, match=r"rtn_layers: layer 12 is past the depth of model tiny \(4 layers\); use 0..4"):
        resolve_placements([12], 4, "tiny")
    with pytest.raises(ValueError, match="name the same layer twice"):
        resolve_placements([4, "last"], 4, "tiny")


def test_hooks_transform_only_inside_applied():
    model = tiny_model()
    bank = attach_bank(model, [0, 2])
    batch = make_batch(2, seed=0)
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    before = model(**inputs).logits
    with bank.applied():
        transformed = model(**inputs).logits
    after = model(**inputs).logits
    torch.testing.assert_close(before, after)
    assert not torch.allclose(before, transformed)
    bank.detach_hooks()
    with bank.applied():
        torch.testing.assert_close(model(**inputs).logits, before)


def test_bank_holds_one_rtn_per_placement_and_source_language_and_one_logit_row_each():
    model = tiny_model()
    single = attach_bank(model, [0, 4])
    assert sorted(single.rtns) == ["0", "4"] and single.mix_logits.shape == (1, 2)
    bank = attach_bank(tiny_model(), [0, 4], num_sources=3)
    assert sorted(bank.rtns) == ["0_0", "0_4", "1_0", "1_4", "2_0", "2_4"]
    assert bank.mix_logits.shape == (3, 2) and torch.equal(bank.mix_logits, torch.zeros(3, 2, dtype=bank.mix_logits.dtype))
    assert bank.rtn(4, 2) is bank.rtns["2_4"]
    with pytest.raises(IndexError, match="source_index 3 outside 0..2"):
        bank.rtn(4, 3)


def test_applied_uses_the_chosen_source_languages_rtns():
    model = tiny_model()
    bank = attach_bank(model, [2], num_sources=2)
    batch = make_batch(2, seed=0)
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    with bank.applied(0):
        first = model(**inputs).logits
    with bank.applied(1):
        second = model(**inputs).logits
    assert not torch.allclose(first, second)
    with torch.no_grad():  # give source 1 source 0's weights: the forwards then agree
        for name, param in bank.rtns["1_2"].named_parameters():
            param.copy_(bank.rtns["0_2"].get_parameter(name))
    with bank.applied(1):
        torch.testing.assert_close(model(**inputs).logits, first)


def test_mixture_report_is_the_softmax_of_each_source_languages_logits():
    bank = attach_bank(tiny_model(), [0, 4], num_sources=2)
    with torch.no_grad():
        bank.mix_logits.copy_(torch.tensor([[0.0, 0.0], [0.0, 1.0]]))
    report = bank.mixture_report(["en", "tr"])
    expected_tr = 1 / (1 + torch.e)
    assert report == pytest.approx({"rtn_mix_en_0": 0.5, "rtn_mix_en_4": 0.5, "rtn_mix_tr_0": expected_tr,
                                    "rtn_mix_tr_4": 1 - expected_tr})
    assert all(type(value) is float for value in report.values())
    assert attach_bank(tiny_model(), [0, 4]).mixture_report() == {"rtn_mix_0": 0.5, "rtn_mix_4": 0.5}


@pytest.mark.parametrize("init, past_the_bound", [("xavier-normal", True), ("xavier-uniform", False)])
def test_rtn_init_fills_xavier_weights_and_zero_biases(init, past_the_bound):
    # reference Raptors.init_weights: xavier_normal_ on both linear layers, biases zero
    torch.manual_seed(0)
    rtn = RTN(400, 300, init=init)
    for layer in (rtn.down, rtn.up):
        assert torch.equal(layer.bias, torch.zeros_like(layer.bias))
        fan_in, fan_out = layer.weight.shape[1], layer.weight.shape[0]
        bound = (6 / (fan_in + fan_out)) ** 0.5  # xavier-uniform's bound = sqrt(3) x the common std
        assert bool(layer.weight.abs().max() > bound) is past_the_bound
        assert layer.weight.std().item() == pytest.approx((2 / (fan_in + fan_out)) ** 0.5, rel=0.02)


def test_bank_initialises_its_rtns_after_building_them_all():
    # Raptors builds every net, then fills their weights: the same seed gives the same RTNs
    torch.manual_seed(3)
    expected = [torch.nn.Linear(6, 3), torch.nn.Linear(3, 7), torch.nn.Linear(6, 3), torch.nn.Linear(3, 7)]
    for linear in expected:
        torch.nn.init.xavier_normal_(linear.weight)
    torch.manual_seed(3)
    bank = RTNBank([0, 2], 6, 3, gate=True, detach_input=True)
    weights = [getattr(bank.rtns[key], part).weight for key in ("0", "2") for part in ("down", "up")]
    for ours, theirs in zip(weights, expected, strict=True):
        assert torch.equal(ours, theirs.weight)


def test_replayed_inputs_feed_the_rtn_while_the_residual_keeps_the_own_state():
    bank = RTNBank([4], 6, 3, gate=True, detach_input=True).double()
    recorded, shifted = torch.randn(2, 6, dtype=torch.float64), torch.randn(2, 6, dtype=torch.float64)
    with bank.inputs_recorded():
        bank.transform(4, 0, recorded)
    rtn = bank.rtn(4)
    with bank.inputs_replayed():
        torch.testing.assert_close(bank.transform(4, 0, shifted), shifted + (rtn(recorded) - recorded))
    torch.testing.assert_close(bank.transform(4, 0, shifted), rtn(shifted))  # outside: its own input
