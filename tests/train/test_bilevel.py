"""The bi-level step: exact and finite-difference hypergradients, the reference's multi-placement
step, the target split, and the baselines.

The expected values are restated here from the paper and from microsoft/MetaXL (``mlt.py``,
``models.py``, ``mtrain.py``) with the model's own submodules: the embeddings, each encoder layer
called on the reference's extended mask, the classifier. None of metaxl-tune's forward code is
used to produce them.
"""

from __future__ import annotations


import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call
from transformers import get_linear_schedule_with_warmup

from helpers import attach_bank, make_batch, tiny_model
from reference_net import ce, classifier, ext_mask, forward_tail, hidden_states
from metaxl_tune.train.bilevel import BackoffFinetuner, Learner, split_target, task_loss
from metaxl_tune.config import RunConfig

ALPHA = 0.05
DEPTH = 4  # the tiny model's layers


def metaxl_config(**changes) -> RunConfig:
    values = dict(model="tiny", data="synthetic", method="metaxl", batch_size=4, max_length=16,
                  rtn_bottleneck=8, lookahead_lr=ALPHA, warmup_ratio=0.0, max_grad_norm=None)
    return RunConfig(**{**values, **changes})


# ---- the reference, restated ---------------------------------------------------------------------


def rtn_key(bank, source, layer):
    return str(layer) if bank.num_sources == 1 else f"{source}_{layer}"


def transform(bank, source, layer, hidden, detach, residual=True):
    """Raptors' perceptron on the (optionally detached) state, plus the residual (step_metaxl);
    without ``residual`` the perceptron's output alone (step_jt_metaxl)."""
    rtn = bank.rtns[rtn_key(bank, source, layer)]
    inner = hidden.detach() if detach else hidden
    out = F.linear(torch.relu(F.linear(inner, rtn.down.weight, rtn.down.bias)), rtn.up.weight, rtn.up.bias)
    if rtn.gate:
        out = torch.sigmoid(out[..., -1:]) * out[..., :-1]
    return hidden + out if residual else out


def reference_source_loss(model, bank, batch, combine, *, source=0, detach=False):
    mask = ext_mask(batch["attention_mask"])
    if combine == "stack":  # every RTN in one chained forward
        hidden = model.roberta.embeddings(input_ids=batch["input_ids"])
        if 0 in bank.layers:
            hidden = transform(bank, source, 0, hidden, detach)
        for k, layer in enumerate(model.roberta.encoder.layer, start=1):
            hidden = layer(hidden, mask)
            if k in bank.layers:
                hidden = transform(bank, source, k, hidden, detach)
        return ce(classifier(model, hidden), batch["labels"])
    # step_metaxl: one encoder pass, then per placement the tail above it, mixed by softmax(alpha).
    states = hidden_states(model, batch)
    alpha = torch.softmax(bank.mix_logits[source], -1)
    loss = 0
    for j, layer_id in enumerate(bank.layers):
        new_h = transform(bank, source, layer_id, states[layer_id], detach)
        loss = loss + alpha[j] * ce(classifier(model, forward_tail(model, layer_id + 1, new_h, mask)), batch["labels"])
    return loss


def plain_logits(model, batch, params=None):
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    return (functional_call(model, params, (), inputs) if params is not None else model(**inputs)).logits


def reference_split(batch, portion):
    """mtrain.py: half = int(len / portion); [:half] trains, [half:] is the meta batch (portion 1: all meta, ours)."""
    half = 0 if portion == 1 else len(batch["input_ids"]) // portion
    return {k: v[:half] for k, v in batch.items()}, {k: v[half:] for k, v in batch.items()}, half


def meta_objective(model, bank, source, target, *, portion, alpha, combine, source_index=0, detach=False):
    """L_meta(theta - alpha * grad_theta L_train(theta, phi)) for phi's current values."""
    train_part, meta_part, half = reference_split(target, portion)
    theta = dict(model.named_parameters())
    loss = reference_source_loss(model, bank, source, combine, source=source_index, detach=detach)
    if half:
        loss = loss + ce(plain_logits(model, train_part), train_part["labels"])
    grads = torch.autograd.grad(loss, list(theta.values()), create_graph=True, allow_unused=True)
    lookahead = {n: p if g is None else p - alpha * g for (n, p), g in zip(theta.items(), grads)}
    return ce(plain_logits(model, meta_part, lookahead), meta_part["labels"])


# ---- exact hypergradient == central finite differences -------------------------------------------

CASES = {
    "last": dict(layers=[4], combine="mixture"),
    "stack-emb+last": dict(layers=[0, 4], combine="stack"),
    "mixture-emb+last": dict(layers=[0, 4], combine="mixture"),
    "middle-portion1": dict(layers=[2], combine="mixture", portion=1),
    "two-sources-mixture": dict(layers=[0, 4], combine="mixture", num_sources=2, source_index=1),
    # the defaults: gated RTN fed the detached hidden state (the reference's)
    # (the mixture only: in the stack the detach cuts phi's path into the later RTN inputs, which
    # a difference of the objective still sees; see RunConfig.rtn_detach_input)
    "gate-detach-mixture": dict(layers=[0, 4], combine="mixture", gate=True, detach=True),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_exact_hypergradient_equals_central_finite_differences(case):
    layers, combine = case["layers"], case["combine"]
    gate, portion, detach = case.get("gate", False), case.get("portion", 2), case.get("detach", False)
    num_sources, source_index = case.get("num_sources", 1), case.get("source_index", 0)
    model = tiny_model()
    bank = attach_bank(model, layers, gate=gate, detach_input=detach, num_sources=num_sources)
    with torch.no_grad():  # non-uniform mixture weights, so their gradient is not degenerate
        bank.mix_logits.copy_(torch.linspace(-0.5, 0.5, bank.mix_logits.numel(), dtype=torch.float64).view_as(bank.mix_logits))
    source, target = make_batch(4, seed=1), make_batch(4, seed=2)
    phi = list(bank.parameters())
    names = [name for name, _ in bank.named_parameters()]
    phi0 = [p.detach().clone() for p in phi]
    theta0 = {k: v.clone() for k, v in model.state_dict().items()}

    config = metaxl_config(rtn_layers=layers, rtn_gate=gate, rtn_detach_input=detach, portion=portion,
                           rtn_combine=combine)
    Learner(model, bank, config, total_steps=10).step(source, target, source_index=source_index)
    # Only this source language's RTNs (and its mixture row) take part; a single placement's
    # mixture weight is the constant 1, so its logit has no gradient either.
    used = [p.grad is not None for p in phi]
    expected_used = [
        (name == "mix_logits" and combine == "mixture" and len(layers) > 1)
        or (name.startswith("rtns.") and (num_sources == 1 or name.startswith(f"rtns.{source_index}_")))
        for name in names
    ]
    assert used == expected_used
    analytic = [p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p) for p in phi]

    model.load_state_dict(theta0)
    model.train()

    def objective(offsets):
        with torch.no_grad():
            for p, p0, offset in zip(phi, phi0, offsets):
                p.copy_(p0 + offset)
        return meta_objective(model, bank, source, target, portion=portion, alpha=ALPHA, combine=combine,
                              source_index=source_index, detach=detach).item()

    def check(offsets):
        eps = 1e-6
        numeric = (objective([eps * o for o in offsets]) - objective([-eps * o for o in offsets])) / (2 * eps)
        exact = sum((g * o).sum() for g, o in zip(analytic, offsets)).item()
        assert abs(numeric - exact) <= 1e-6 * abs(exact), (numeric, exact)

    generator = torch.Generator().manual_seed(0)
    # a directional derivative along a random direction covers every coordinate
    check([torch.randn(p.shape, generator=generator, dtype=p.dtype) for p in phi])
    flat = torch.cat([g.flatten() for g in analytic])
    assert flat.abs().max() > 0
    sizes = [p.numel() for p in phi]
    for index in torch.topk(flat.abs(), 2).indices.tolist():  # and the largest single coordinates
        unit = torch.zeros_like(flat)
        unit[index] = 1
        check([o.view(p.shape) for o, p in zip(torch.split(unit, sizes), phi)])
    if expected_used[names.index("mix_logits")]:  # the mixture logits of this source, one by one
        logits = names.index("mix_logits")
        for j in range(len(layers)):
            offsets = [torch.zeros_like(p) for p in phi]
            offsets[logits][source_index, j] = 1
            check(offsets)


# ---- the reference's step_metaxl under the defaults, restated ----------------------------------------


class Raptors(torch.nn.Module):
    """models.py Raptors as the README recipe builds it (perceptron, --tied
    --transfer_component_add_weights): per placement d -> r -> ReLU -> d + 1, the last output
    unit's sigmoid scaling the other d; every net built first, then xavier_normal_ weights and
    zero biases (init_weights); one zero logit per placement (alpha)."""

    def __init__(self, hidden, bottleneck, placements):
        super().__init__()
        self.nets = torch.nn.ModuleList(
            torch.nn.Sequential(torch.nn.Linear(hidden, bottleneck), torch.nn.ReLU(), torch.nn.Linear(bottleneck, hidden + 1))
            for _ in range(placements)
        )
        self.alpha = torch.nn.Parameter(torch.zeros(1, placements))
        for net in self.nets:
            for linear in (net[0], net[2]):
                torch.nn.init.xavier_normal_(linear.weight)
                torch.nn.init.zeros_(linear.bias)

    def forward(self, j, x):
        out = self.nets[j](x)
        return torch.sigmoid(out[..., -1]).unsqueeze(-1) * out[..., :-1]


def restated_loss_train(model, raptors, layers, source, data_g):
    """step_metaxl's loss_train: one full source forward, then per placement
    new_h = meta_net(h.detach()) + h run through the layers above it, mixed by softmax(alpha);
    plus the target training part."""
    states = hidden_states(model, source)
    mask = ext_mask(source["attention_mask"])
    weights = torch.softmax(raptors.alpha[0], -1)
    loss_s = 0
    for j, layer_id in enumerate(layers):
        new_h = raptors(j, states[layer_id].detach()) + states[layer_id]
        logits = classifier(model, forward_tail(model, layer_id + 1, new_h, mask))
        loss_s = loss_s + weights[j] * ce(logits, source["labels"])
    return loss_s + ce(plain_logits(model, data_g), data_g["labels"])


def restated_step_metaxl(model, raptors, layers, opts, source, target, portion):
    """mlt.py step_metaxl with mtrain.py's split and scheduler steps: look-ahead by an in-place
    shift of the weights, the proxy -eta <grad L_train, grad' L_meta> back-propagated into the
    RTNs and alpha, then theta stepped on the training loss recomputed from scratch with the new
    phi, clipped at norm 10. Returns phi's gradients."""
    main_opt, main_schedule, meta_opt, meta_schedule = opts
    data_g, data_t, _ = reference_split(target, portion)
    params = list(model.parameters())
    eta = main_schedule.get_last_lr()[0]
    grads = torch.autograd.grad(restated_loss_train(model, raptors, layers, source, data_g), params,
                                create_graph=True, allow_unused=True)
    saved = [p.data.clone() for p in params]
    for p, g in zip(params, grads):
        if g is not None:
            p.data.sub_(eta * g)
    grads_prime = torch.autograd.grad(ce(plain_logits(model, data_t), data_t["labels"]), params, allow_unused=True)
    # Restored in place. The reference rebinds (`p.data = saved`), which leaves views of the
    # weights that autograd saved in the forward at theta'; that is not part of the method.
    for p, s in zip(params, saved):
        p.data.copy_(s)
    proxy = -eta * sum((g * gp).sum() for g, gp in zip(grads, grads_prime) if g is not None and gp is not None)
    meta_opt.zero_grad()
    proxy.backward()
    hypergradient = [p.grad.clone() for p in raptors.parameters()]
    meta_opt.step()
    main_opt.zero_grad()
    restated_loss_train(model, raptors, layers, source, data_g).backward()
    torch.nn.utils.clip_grad_norm_(params, 10)
    main_opt.step()
    main_schedule.step()
    meta_schedule.step()
    return hypergradient


def reference_optimizers(model, meta_params, lr, meta_lr, total_steps, warmup_ratio):
    """mtrain.py: torch.optim.Adam (L2 weight decay 5e-4, eps 1e-8) for both, linear warm-up."""
    main = torch.optim.Adam(model.parameters(), lr=lr, eps=1e-8, weight_decay=5e-4)
    meta = torch.optim.Adam(meta_params, lr=meta_lr, eps=1e-8, weight_decay=5e-4)
    warmup = int(warmup_ratio * total_steps)
    return (main, get_linear_schedule_with_warmup(main, warmup, total_steps),
            meta, get_linear_schedule_with_warmup(meta, warmup, total_steps))


def assert_agree(ours, reference):
    """Lists of tensors equal to 1e-9 of their largest entry (summation-order noise makes
    entries whose value is near zero, e.g. gradients that cancel to 1e-21, differ relatively)."""
    scale = max(r.detach().abs().max().item() for r in reference)
    for a, b in zip(ours, reference, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9 * scale)


@pytest.mark.parametrize("portion", [2, 3])
@pytest.mark.parametrize("layers", [[4], [0, 2, 4]], ids=["last", "emb+middle+last"])
def test_default_metaxl_step_is_the_reference_step_metaxl(layers, portion):
    # RunConfig's defaults; only the tiny sizes (model, batch, length, bottleneck), the placements
    # and the portion are given.
    config = RunConfig(model="tiny", data="synthetic", method="metaxl", batch_size=6, max_length=16,
                       rtn_bottleneck=8, rtn_layers=[0, "middle", "last"] if len(layers) > 1 else ["last"],
                       portion=portion)
    ours_model, ref_model = tiny_model(), tiny_model()
    ours_bank = attach_bank(ours_model, layers, bottleneck=config.rtn_bottleneck, gate=config.rtn_gate,
                            detach_input=config.rtn_detach_input, init=config.rtn_init)
    torch.manual_seed(1)  # attach_bank's seed: the same draws give the same initial RTNs
    raptors = Raptors(ref_model.config.hidden_size, config.rtn_bottleneck, len(layers)).to(torch.float64)
    for ours_phi, ref_phi in zip(ours_bank.parameters(), raptors.parameters(), strict=True):
        assert torch.equal(ours_phi, ref_phi)
    total_steps = 10
    ours = Learner(ours_model, ours_bank, config, total_steps=total_steps)
    opts = reference_optimizers(ref_model, raptors.parameters(), config.lr, config.meta_lr, total_steps,
                                config.warmup_ratio)
    for step in range(3):
        source, target = make_batch(6, seed=10 + step), make_batch(6, seed=20 + step)
        ours.step(source, target)
        hypergradient = restated_step_metaxl(ref_model, raptors, layers, opts, source, target, portion)
        phi = list(ours_bank.parameters())
        if step > 0:  # step 1: eta = 0 under the warm-up, a zero hypergradient on both sides
            # one placement: its mixture logit gets no gradient here, an exact zero there
            assert_agree([torch.zeros_like(p) if p.grad is None else p.grad for p in phi], hypergradient)
        assert_agree(phi, list(raptors.parameters()))
        assert_agree([p.grad for p in ours_model.parameters()], [p.grad for p in ref_model.parameters()])
        assert_agree(list(ours_model.parameters()), list(ref_model.parameters()))
    assert any(p.grad is not None and p.grad.abs().max() > 0 for p in ours_bank.parameters())
    if len(layers) > 1:  # the mixture weights moved away from uniform, identically
        assert not torch.allclose(ours_bank.mix_logits, torch.zeros_like(ours_bank.mix_logits))


RECOMPUTE_CASES = {
    "last": dict(layers=[4], combine="mixture"),
    "mixture-three": dict(layers=[0, 2, 4], combine="mixture"),
    "stack-three": dict(layers=[0, 2, 4], combine="stack"),
}


@pytest.mark.parametrize("case", RECOMPUTE_CASES.values(), ids=RECOMPUTE_CASES.keys())
def test_recomputed_theta_gradient_equals_a_full_recompute(case):
    # The recompute re-runs only the RTNs and the layers above them and reuses the target part's
    # gradient; theta's gradient is the full training loss's at the updated phi. Dropout off
    # (tiny_model), so the reused lower forward and a fresh one are the same function.
    layers, combine = case["layers"], case["combine"]
    model = tiny_model()
    bank = attach_bank(model, layers, gate=True, detach_input=True)
    source, target = make_batch(4, seed=3), make_batch(4, seed=4)
    config = metaxl_config(rtn_layers=layers, rtn_combine=combine, lr=1e-2, meta_lr=1e-2)
    assert config.theta_update == "recompute"
    Learner(model, bank, config, total_steps=10).step(source, target)  # theta's grads stay in .grad

    fresh = tiny_model()  # theta before the step; phi after it
    train_part, _, _ = reference_split(target, config.portion)
    loss = reference_source_loss(fresh, bank, source, combine, detach=True)
    loss = loss + ce(plain_logits(fresh, train_part), train_part["labels"])
    expected = torch.autograd.grad(loss, list(fresh.parameters()))
    assert_agree([p.grad for p in model.parameters()], list(expected))


def test_one_placement_mixture_is_the_stack_forward():
    results = []
    for combine in ("mixture", "stack"):
        model = tiny_model()
        bank = attach_bank(model, [2])
        learner = Learner(model, bank, metaxl_config(rtn_layers=[2], rtn_combine=combine), total_steps=10)
        for step in range(2):
            learner.step(make_batch(4, seed=30 + step), make_batch(4, seed=40 + step))
        results.append([p.detach().clone() for p in [*model.parameters(), *bank.parameters()]])
    for a, b in zip(*results):
        assert torch.equal(a, b)


# ---- finite-difference hypergradient -------------------------------------------------------------

FD_CASES = {
    "last": dict(layers=[4]),
    "mixture-emb+last": dict(layers=[0, 4]),
    "two-sources": dict(layers=[0, 4], num_sources=2, source_index=1),
    # with dropout, the forwards at theta+- replay the training forward's masks
    "mixture-dropout": dict(layers=[0, 4], dropout=0.1),
    # SDPA's attention dropout included (recorded through its restated math kernel on a CPU)
    "sdpa-dropout": dict(layers=[4], dropout=0.1, attention="sdpa"),
    # the RTN chain of the stack: each RTN's recorded input is the one of the training forward
    "stack-emb+middle+last": dict(layers=[0, 2, 4], combine="stack"),
    # without the detach the estimate follows the RTN input as theta moves, as its gradient does
    "undetached-ungated": dict(layers=[0, 4], detach=False, gate=False),
}


def _hypergradient(config, case):
    model = tiny_model(dropout=case.get("dropout", 0.0), attention=case.get("attention", "eager"))
    bank = attach_bank(model, case["layers"], num_sources=case.get("num_sources", 1), gate=config.rtn_gate,
                       detach_input=config.rtn_detach_input, init=config.rtn_init)
    with torch.no_grad():
        bank.mix_logits.copy_(torch.linspace(-0.5, 0.5, bank.mix_logits.numel(), dtype=torch.float64).view_as(bank.mix_logits))
    learner = Learner(model, bank, config, total_steps=10)
    torch.manual_seed(7)  # the same dropout masks for the exact and the estimated step
    learner.step(make_batch(4, seed=1), make_batch(4, seed=2), source_index=case.get("source_index", 0))
    return [p.grad for p in bank.parameters()]


@pytest.mark.parametrize("case", FD_CASES.values(), ids=FD_CASES.keys())
def test_finite_difference_hypergradient_agrees_with_the_exact_one(case, monkeypatch):
    # The defaults (gated RTN on the detached hidden state, recompute) unless the case says otherwise.
    config = metaxl_config(rtn_layers=case["layers"], rtn_combine=case.get("combine", "mixture"),
                           rtn_detach_input=case.get("detach", True), rtn_gate=case.get("gate", True))
    exact = _hypergradient(config, case)

    flags = []
    original = torch.autograd.grad

    def recording_grad(*args, **kwargs):
        flags.append(kwargs.get("create_graph", False))
        return original(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", recording_grad)
    estimate = _hypergradient(config.replace(hypergradient="finite-difference"), case)
    monkeypatch.undo()

    # no second-order graph: every gradient is first order (source and target-train parts of
    # L_train, v, the difference) and the estimate carries no graph
    assert len(flags) == 4 and not any(flags)
    assert all(g is None or (g.grad_fn is None and not g.requires_grad) for g in estimate)
    assert [g is None for g in exact] == [g is None for g in estimate]
    exact_flat = torch.cat([g.flatten() for g in exact if g is not None])
    estimate_flat = torch.cat([g.flatten() for g in estimate if g is not None])
    assert torch.nn.functional.cosine_similarity(exact_flat, estimate_flat, dim=0) >= 0.99


# ---- target split, baselines, optimizers ---------------------------------------------------------


def test_portion_three_of_twelve_trains_on_the_first_four_and_metas_the_rest():
    batch = make_batch(12, seed=0)
    train, meta = split_target(batch, 3)
    # mtrain.py: half = int(12 / 3) = 4; train_t_ids[:half] join the loss, train_t_ids[half:] are meta
    assert train["input_ids"].shape[0] == 4 and meta["input_ids"].shape[0] == 8
    for key in batch:
        assert torch.equal(train[key], batch[key][torch.arange(0, 4)])
        assert torch.equal(meta[key], batch[key][torch.arange(4, 12)])


def test_portion_one_sends_every_target_example_to_the_meta_batch():
    batch = make_batch(6, seed=0)
    train, meta = split_target(batch, 1)
    assert train is None and torch.equal(meta["input_ids"], batch["input_ids"])


@pytest.mark.parametrize("method", ["target-only", "jt", "jt-rtn"])
def test_single_level_methods_take_one_gradient_step(method):
    model = tiny_model()
    config = metaxl_config(method=method, max_grad_norm=1e-3)
    bank = attach_bank(model, [4], residual=config.rtn_residual)
    source, target = make_batch(4, seed=5), make_batch(4, seed=6)
    phi_before = [p.detach().clone() for p in bank.parameters()]
    rtn = bank.rtns["4"]
    states = hidden_states(model, source)
    # step_jt_metaxl: the RTN output replaces h
    source_rtn = ce(classifier(model, transform(bank, 0, 4, states[4], False, residual=False)), source["labels"])
    source_plain = ce(classifier(model, states[4]), source["labels"])
    target_loss = ce(plain_logits(model, target), target["labels"])
    expected_loss = {
        "target-only": target_loss,
        # step_gold_mix: (L_t + L_s) / 2
        "jt": (source_plain + target_loss) / 2,
        "jt-rtn": source_rtn + target_loss,
    }[method]
    expected_grads = torch.autograd.grad(expected_loss, list(model.parameters()))
    losses = Learner(model, bank, config, total_steps=10).step(source, target)
    assert losses.train_loss == pytest.approx(expected_loss.item(), rel=1e-12)
    phi_moved = any(not torch.equal(a, b) for a, b in zip(phi_before, bank.parameters()))
    assert phi_moved == (method == "jt-rtn")
    assert rtn is bank.rtns["4"]
    # None clips, whatever max_grad_norm says (step_gold_only, step_gold_mix, step_jt_metaxl)
    for param, grad in zip(model.parameters(), expected_grads):
        torch.testing.assert_close(param.grad, grad)


def test_both_optimizers_are_adam_with_the_reference_l2_weight_decay():
    model = tiny_model()
    learner = Learner(model, attach_bank(model, [4]), metaxl_config(), total_steps=10)
    for optimizer in (learner.main_opt, learner.meta_opt):
        assert type(optimizer) is torch.optim.Adam  # L2 added to the gradient, not AdamW's decoupled decay
        assert optimizer.defaults["weight_decay"] == 5e-4 and optimizer.defaults["eps"] == 1e-8


def test_algorithm1_steps_theta_on_the_gradient_at_the_old_phi():
    model = tiny_model()
    bank = attach_bank(model, [4])
    source, target = make_batch(4, seed=3), make_batch(4, seed=4)
    train_part, _, _ = reference_split(target, 2)
    states = hidden_states(model, source)
    loss = ce(classifier(model, transform(bank, 0, 4, states[4], False)), source["labels"])
    loss = loss + ce(plain_logits(model, train_part), train_part["labels"])
    expected = torch.autograd.grad(loss, list(model.parameters()))
    Learner(model, bank, metaxl_config(theta_update="algorithm1"), total_steps=10).step(source, target)
    for param, grad in zip(model.parameters(), expected):
        torch.testing.assert_close(param.grad, grad)


def test_meta_forward_runs_without_the_rtn():
    model = tiny_model()
    bank = attach_bank(model, [4])
    batch = make_batch(2, seed=7)
    params = dict(model.named_parameters())
    plain = plain_logits(model, batch, params)
    with bank.applied():
        transformed = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    assert not torch.allclose(plain, transformed.logits)
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
