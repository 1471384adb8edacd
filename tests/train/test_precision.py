"""Mixed precision: the hypergradient under autocast, one loss scaler for both optimizers."""

from __future__ import annotations

import pytest
import torch

from helpers import attach_bank, make_batch, tiny_model
from metaxl_tune.train.bilevel import Learner
from metaxl_tune.config import RunConfig
from metaxl_tune.train.precision import PrecisionError, check_precision


def config(**changes) -> RunConfig:
    values = dict(model="tiny", data="synthetic", method="metaxl", batch_size=4, max_length=16,
                  rtn_bottleneck=8, lookahead_lr=0.05, warmup_ratio=0.0)
    return RunConfig(**{**values, **changes})


def fp16_on_cpu() -> bool:
    try:
        check_precision("fp16", torch.device("cpu"))
    except PrecisionError:
        return False
    return True


needs_cpu_fp16 = pytest.mark.skipif(not fp16_on_cpu(), reason=f"torch {torch.__version__} has no fp16 autocast on CPU")


def one_step(precision: str, **changes):
    """(phi's hypergradient, theta's gradient, learner) after one MetaXL step of a float32 tiny model."""
    model = tiny_model(dtype=torch.float32)
    bank = attach_bank(model, [4])
    learner = Learner(model, bank, config(precision=precision, **changes), total_steps=10)
    learner.step(make_batch(4, seed=1), make_batch(4, seed=2))
    flat = lambda params: torch.cat([p.grad.flatten() for p in params if p.grad is not None])  # noqa: E731
    return flat(bank.parameters()), flat(model.parameters()), learner


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=0).item()


def test_exact_hypergradient_under_bf16_autocast_agrees_with_fp32():
    exact, _, _ = one_step("fp32")
    mixed, _, _ = one_step("bf16")
    assert exact.abs().max() > 0
    assert cosine(mixed, exact) >= 0.99


@needs_cpu_fp16
@pytest.mark.parametrize("theta_update", ["algorithm1", "recompute"])
def test_fp16_unscales_both_optimizers_gradients(theta_update):
    # Both levels' gradients come from losses scaled by S = 65536; after the step each
    # optimizer holds them unscaled, so they match fp32's in direction and size.
    phi32, theta32, _ = one_step("fp32", theta_update=theta_update)
    phi16, theta16, learner = one_step("fp16", theta_update=theta_update)
    assert learner.precision.scaler.get_scale() == 65536.0
    for mixed, exact in ((phi16, phi32), (theta16, theta32)):
        assert cosine(mixed, exact) >= 0.99
        assert mixed.norm().item() == pytest.approx(exact.norm().item(), rel=0.05)


@needs_cpu_fp16
def test_fp16_step_with_overflowing_gradients_is_skipped_for_both_optimizers():
    model = tiny_model(dtype=torch.float32)
    bank = attach_bank(model, [4])
    learner = Learner(model, bank, config(precision="fp16"), total_steps=10)
    learner.precision.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**60)  # fp16 gradients overflow
    before = [p.detach().clone() for p in [*model.parameters(), *bank.parameters()]]
    learner.step(make_batch(4, seed=1), make_batch(4, seed=2))
    after = [*model.parameters(), *bank.parameters()]
    assert all(torch.equal(old, new) for old, new in zip(before, after))
    assert learner.precision.scaler.get_scale() == 2.0**59


@needs_cpu_fp16
def test_scaler_state_survives_a_checkpoint():
    _, _, learner = one_step("fp16")
    learner.precision.scaler.update(1024.0)
    state = learner.state_dict()
    model = tiny_model(dtype=torch.float32)
    restored = Learner(model, attach_bank(model, [4]), config(precision="fp16"), total_steps=10)
    restored.load_state_dict(state)
    assert restored.precision.scaler.get_scale() == 1024.0


def test_unknown_precision_is_one_line():
    with pytest.raises(ValueError, match="precision"):
        config(precision="fp8")
