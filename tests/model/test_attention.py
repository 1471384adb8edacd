"""Attention kernels: fused SDPA (math kernel in the twice-differentiated pass) equals eager."""

from __future__ import annotations

import pytest
import torch

from helpers import attach_bank, make_batch, tiny_model
from metaxl_tune.train.bilevel import Learner
from metaxl_tune.config import RunConfig

STEPS = {
    "target-only": {"method": "target-only"},
    "jt": {"method": "jt"},
    "jt-rtn": {"method": "jt-rtn"},
    "metaxl": {"method": "metaxl", "theta_update": "algorithm1"},
    "metaxl-recompute": {"method": "metaxl", "theta_update": "recompute"},
}


def one_step(attention: str, changes: dict) -> list[torch.Tensor]:
    """Losses and every gradient (theta's, phi's) of one step of a float32 tiny model built with
    ``attention``. Gradients, not Adam's updates: Adam's first step is lr * sign(g), which
    turns rounding noise in a near-zero gradient into a full-size difference."""
    model = tiny_model(dtype=torch.float32, attention=attention)
    assert model.config._attn_implementation == attention
    run = RunConfig(model="tiny", data="synthetic", batch_size=4, max_length=16, rtn_bottleneck=8,
                    lookahead_lr=0.05, warmup_ratio=0.0, max_grad_norm=None, attention=attention, **changes)
    bank = attach_bank(model, [4], residual=run.rtn_residual) if run.uses_rtn else None
    losses = Learner(model, bank, run, total_steps=10).step(make_batch(4, seed=1), make_batch(4, seed=2))
    phi = list(bank.parameters()) if bank is not None else []
    values = [losses.train_loss] + ([losses.meta_loss] if losses.meta_loss is not None else [])
    return [torch.tensor(values)] + [p.grad.clone() for p in [*model.parameters(), *phi] if p.grad is not None]


@pytest.mark.parametrize("step", list(STEPS))
def test_sdpa_step_equals_eager_in_fp32(step):
    eager, sdpa = one_step("eager", STEPS[step]), one_step("sdpa", STEPS[step])
    assert len(eager) == len(sdpa)
    for a, b in zip(eager, sdpa):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)


def test_fused_sdpa_alone_cannot_take_the_metaxl_double_backward():
    # Why the math kernel is needed: without it the create_graph gradient through the fused
    # CPU kernel cannot be differentiated again (DESIGN.md section 3).
    q = torch.randn(2, 2, 5, 4, requires_grad=True)
    out = torch.nn.functional.scaled_dot_product_attention(q, q, q)
    (grad,) = torch.autograd.grad(out.square().sum(), q, create_graph=True)
    with pytest.raises(RuntimeError, match="not implemented"):
        torch.autograd.grad(grad.sum(), q)
