"""The bi-level step: exact hypergradient, the reference's recompute variant, the baselines."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call

from helpers import attach_bank, make_batch, tiny_model
from metaxl_tune.bilevel import BackoffFinetuner, Learner, split_target, task_loss
from metaxl_tune.config import RunConfig

ALPHA = 0.05


def metaxl_config(**changes) -> RunConfig:
    values = dict(model="tiny", data="synthetic", method="metaxl", batch_size=4, max_length=16,
                  rtn_bottleneck=8, lookahead_lr=ALPHA, warmup_ratio=0.0, max_grad_norm=None)
    return RunConfig(**{**values, **changes})


def meta_objective(model, bank, source, target, portion, alpha):
    """L_meta(theta - alpha * grad_theta L_train(theta, phi)) as a plain function of phi's values."""
    target_train, target_meta = split_target(target, portion)
    theta = dict(model.named_parameters())
    with bank.applied():
        train_loss = task_loss(model, source)
    if target_train is not None:
        train_loss = train_loss + task_loss(model, target_train)
    grads = torch.autograd.grad(train_loss, list(theta.values()), create_graph=True, allow_unused=True)
    lookahead = {n: p if g is None else p - alpha * g for (n, p), g in zip(theta.items(), grads)}
    return task_loss(model, target_meta, params=lookahead)


@pytest.mark.parametrize(
    "layers, gate, portion",
    [(["last"], False, 2), ([0, "last"], False, 2), ([0, "last"], True, 2), ([2], False, 1)],
    ids=["last", "emb+last", "emb+last-gated", "middle-portion1"],
)
def test_metaxl_phi_gradient_equals_finite_differences(layers, gate, portion):
    model = tiny_model()
    placements = [4 if layer == "last" else layer for layer in layers]
    bank = attach_bank(model, placements, gate=gate)
    source, target = make_batch(4, seed=1), make_batch(4, seed=2)
    phi = list(bank.parameters())
    phi0 = [p.detach().clone() for p in phi]
    theta0 = {k: v.clone() for k, v in model.state_dict().items()}

    learner = Learner(model, bank, metaxl_config(rtn_layers=layers, rtn_gate=gate, portion=portion), total_steps=10)
    learner.step(source, target)
    analytic = [p.grad.detach().clone() for p in phi]

    model.load_state_dict(theta0)
    model.train()

    def objective(offsets):
        with torch.no_grad():
            for p, p0, offset in zip(phi, phi0, offsets):
                p.copy_(p0 + offset)
        return meta_objective(model, bank, source, target, portion, ALPHA).item()

    eps = 1e-6
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):  # directional derivatives along random directions cover every coordinate
        direction = [torch.randn(p.shape, generator=generator, dtype=p.dtype) for p in phi]
        numeric = (objective([eps * d for d in direction]) - objective([-eps * d for d in direction])) / (2 * eps)
        exact = sum((g * d).sum() for g, d in zip(analytic, direction)).item()
        assert abs(numeric - exact) <= 1e-6 * abs(exact)
    flat = torch.cat([g.flatten() for g in analytic])
    assert flat.abs().max() > 0
    for index in torch.topk(flat.abs(), 5).indices.tolist():  # and the largest single coordinates
        unit = torch.zeros_like(flat)
        unit[index] = 1
        offsets = list(torch.split(unit, [p.numel() for p in phi]))
        offsets = [o.view(p.shape) for o, p in zip(offsets, phi)]
        numeric = (objective([eps * o for o in offsets]) - objective([-eps * o for o in offsets])) / (2 * eps)
        assert abs(numeric - flat[index].item()) <= 1e-6 * abs(flat[index].item())


def reference_recompute_step(model, bank, main_opt, main_schedule, meta_opt, meta_schedule, source, target, portion):
    """microsoft/MetaXL mlt.py step_metaxl, restated: in-place look-ahead, the dot-product proxy
    -eta <grad_theta L_train, grad_theta' L_meta> back-propagated into phi, then theta stepped on a
    training loss recomputed with the new phi."""
    target_train, target_meta = split_target(target, portion)
    params = list(model.parameters())

    def train_loss():
        with bank.applied():
            loss = task_loss(model, source)
        return loss + task_loss(model, target_train)

    eta = main_opt.param_groups[0]["lr"]
    grads = torch.autograd.grad(train_loss(), params, create_graph=True, allow_unused=True)
    saved = [p.data.clone() for p in params]
    for p, g in zip(params, grads):
        if g is not None:
            p.data.sub_(eta * g)
    grads_prime = torch.autograd.grad(task_loss(model, target_meta), params, allow_unused=True)
    # Restored in place. The reference rebinds (`p.data = saved`), which leaves views of the
    # weights that autograd saved in the forward (transposes, reshapes) at theta', so its
    # second-order term is evaluated partly at theta'; that perturbs the hypergradient by
    # several percent, and is not part of the method.
    for p, s in zip(params, saved):
        p.data.copy_(s)
    proxy = -eta * sum((g * gp).sum() for g, gp in zip(grads, grads_prime) if g is not None and gp is not None)
    meta_opt.zero_grad()
    proxy.backward()
    hypergradient = [p.grad.clone() for p in bank.parameters()]
    meta_opt.step()
    meta_schedule.step()
    main_opt.zero_grad()
    train_loss().backward()
    torch.nn.utils.clip_grad_norm_(params, 10.0)
    main_opt.step()
    main_schedule.step()
    return hypergradient


def test_recompute_variant_equals_reference_formulation():
    config = metaxl_config(theta_update="recompute", lookahead_lr=None, max_grad_norm=10.0, lr=1e-2, meta_lr=1e-2)
    ours_model, ref_model = tiny_model(), tiny_model()
    ours_bank, ref_bank = attach_bank(ours_model, [0, 4]), attach_bank(ref_model, [0, 4])
    ours = Learner(ours_model, ours_bank, config, total_steps=10)
    ref = Learner(ref_model, ref_bank, config, total_steps=10)  # only for identically built optimizers
    for step in range(3):
        source, target = make_batch(4, seed=10 + step), make_batch(4, seed=20 + step)
        ours.step(source, target)
        hypergradient = reference_recompute_step(ref_model, ref_bank, ref.main_opt, ref.main_schedule,
                                                 ref.meta_opt, ref.meta_schedule, source, target, config.portion)
        for ours_phi, ref_phi, ref_grad in zip(ours_bank.parameters(), ref_bank.parameters(), hypergradient):
            torch.testing.assert_close(ours_phi.grad, ref_grad, rtol=1e-9, atol=1e-14)
            torch.testing.assert_close(ours_phi, ref_phi, rtol=1e-9, atol=1e-14)
        for a, b in zip(ours_model.parameters(), ref_model.parameters()):
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-9, atol=1e-14)
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-14)


def test_algorithm1_steps_theta_on_the_gradient_at_the_old_phi():
    model = tiny_model()
    bank = attach_bank(model, [4])
    source, target = make_batch(4, seed=3), make_batch(4, seed=4)
    target_train, _ = split_target(target, 2)
    with bank.applied():
        loss = task_loss(model, source)
    loss = loss + task_loss(model, target_train)
    expected = torch.autograd.grad(loss, list(model.parameters()))
    Learner(model, bank, metaxl_config(), total_steps=10).step(source, target)
    for param, grad in zip(model.parameters(), expected):
        torch.testing.assert_close(param.grad, grad)


def test_split_target_sends_the_last_share_to_the_meta_batch():
    batch = make_batch(6, seed=0)
    train, meta = split_target(batch, 3)
    assert train["input_ids"].shape[0] == 4 and meta["input_ids"].shape[0] == 2
    torch.testing.assert_close(meta["input_ids"], batch["input_ids"][4:])
    assert split_target(batch, 1)[0] is None


@pytest.mark.parametrize("method", ["target-only", "jt", "jt-rtn"])
def test_single_level_methods_take_one_gradient_step(method):
    model = tiny_model()
    bank = attach_bank(model, [4])
    source, target = make_batch(4, seed=5), make_batch(4, seed=6)
    config = metaxl_config(method=method)
    phi_before = [p.detach().clone() for p in bank.parameters()]
    with bank.applied():
        source_rtn = task_loss(model, source)
    expected_loss = {
        "target-only": task_loss(model, target),
        "jt": task_loss(model, source) + task_loss(model, target),
        "jt-rtn": source_rtn + task_loss(model, target),
    }[method]
    losses = Learner(model, bank, config, total_steps=10).step(source, target)
    assert losses.train_loss == pytest.approx(expected_loss.item(), rel=1e-12)
    phi_moved = any(not torch.equal(a, b) for a, b in zip(phi_before, bank.parameters()))
    assert phi_moved == (method == "jt-rtn")


def test_meta_forward_runs_without_the_rtn():
    model = tiny_model()
    bank = attach_bank(model, [4])
    batch = make_batch(2, seed=7)
    params = dict(model.named_parameters())
    plain = functional_call(model, params, (), {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]})
    with bank.applied():
        transformed = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    assert not torch.allclose(plain.logits, transformed.logits)
    torch.testing.assert_close(task_loss(model, batch, params=params), task_loss(model, batch))


def test_backoff_finetune_step_trains_theta_on_source_plus_target_with_phi_frozen():
    # Reference step_metaxl_finetune: L_s (RTN applied) + L_t over the whole target batch, theta only.
    model = tiny_model()
    bank = attach_bank(model, [4])
    source, target = make_batch(4, seed=1), make_batch(4, seed=2)
    learner = Learner(model, bank, metaxl_config(lr=1e-2), total_steps=10)
    with bank.applied():
        source_loss = task_loss(model, source)
    expected = (source_loss + task_loss(model, target)).item()  # the target passes untransformed
    phi0 = [p.detach().clone() for p in bank.parameters()]
    theta0 = [p.detach().clone() for p in model.parameters()]

    losses = BackoffFinetuner(learner).step(source, target)

    assert losses.train_loss == pytest.approx(expected, rel=1e-12) and losses.meta_loss is None
    assert all(torch.equal(p, p0) and p.grad is None for p, p0 in zip(bank.parameters(), phi0))
    assert any(not torch.equal(p, p0) for p, p0 in zip(model.parameters(), theta0))
