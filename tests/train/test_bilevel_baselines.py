"""JT w/ RTN and target-only as the authors' code runs them, restated and compared step by step.

The reference (microsoft/MetaXL) trains JT w/ RTN with ``mlt.py: step_jt_metaxl``: one encoder
pass over the source batch, then for each placement k the layers above it (``models.py:
forward_tail``) run on the RTN output itself (``Raptors.forward``: the perceptron, scaled by its
sigmoid gate unit when gated; no residual, no detached input), the per-placement losses mixed by
``softmax(Raptors.alpha)`` (``get_alpha``), the whole target batch's loss added (a sum, not a
mean, no ``portion`` split), one backward, then ``main_opt.step()`` and ``meta_opt.step()`` with
no clipping; ``mtrain.py`` steps both linear warm-up schedules after each step. Target-only is
``step_gold_only``: the target loss, one backward, the main step, no clipping.

Everything below is restated in float64 without metaxl-tune's forward or training code: the
encoder is run layer by layer with the model's own submodules on the reference's extended mask,
the RTN is a separate set of tensors copied from ours at initialisation, and Adam (L2 weight
decay added to the gradient, as ``torch.optim.Adam`` in ``mtrain.py``) and the warm-up schedule
are written out.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from helpers import attach_bank, make_batch, tiny_model
from reference_net import ce, classifier, ext_mask, forward_tail, hidden_states
from metaxl_tune.results.analysis import collect_representations
from metaxl_tune.train.bilevel import BackoffFinetuner, Learner
from metaxl_tune.config import ConfigError, RunConfig, refuse_ignored_options
from metaxl_tune.train.trainer import Run

TOTAL_STEPS = 10
STEPS = 3


def config_for(method: str, **changes) -> RunConfig:
    """RunConfig's defaults (lr, meta_lr, warm-up, weight decay, max_grad_norm, gate, ...) except
    the model, the data and the tiny sizes."""
    return RunConfig(model="tiny", data="synthetic", method=method, batch_size=4, max_length=16, rtn_bottleneck=8,
                     **changes)


# ---- the reference, restated ---------------------------------------------------------------------


def plain_loss(model, batch):
    """main_net(data, mask)[0] and its loss: embeddings, every layer, classifier."""
    mask = ext_mask(batch["attention_mask"])
    hidden = forward_tail(model, 1, model.roberta.embeddings(input_ids=batch["input_ids"]), mask)
    return ce(classifier(model, hidden), batch["labels"])


class ReferenceRaptors:
    """models.py Raptors (perceptron, one language): per placement Linear(d, r) -> ReLU ->
    Linear(r, d [+1 gate unit]); the gated output is sigmoid(last unit) * the other d. Its
    ``forward`` returns that output alone: whether h is added is the step's business."""

    def __init__(self, bank, gate: bool):
        self.gate = gate
        self.nets = []
        for layer in bank.layers:
            rtn = bank.rtns[str(layer)]
            self.nets.append([t.detach().clone().requires_grad_()
                              for t in (rtn.down.weight, rtn.down.bias, rtn.up.weight, rtn.up.bias)])
        self.alpha = bank.mix_logits.detach().clone().requires_grad_()

    def __call__(self, j, hidden):
        w1, b1, w2, b2 = self.nets[j]
        out = F.linear(torch.relu(F.linear(hidden, w1, b1)), w2, b2)
        if self.gate:
            out = torch.sigmoid(out[..., -1]).unsqueeze(-1) * out[..., :-1]
        return out

    def get_alpha(self):
        return torch.softmax(self.alpha[0], -1)

    def parameters(self):
        return [t for net in self.nets for t in net] + [self.alpha]


class ReferenceAdam:
    """torch.optim.Adam(lr, eps=1e-8, weight_decay=5e-4) as mtrain.py builds it, written out:
    the L2 term joins the gradient; a parameter without a gradient is skipped."""

    def __init__(self, params, weight_decay, eps=1e-8, betas=(0.9, 0.999)):
        self.params, self.weight_decay, self.eps, self.betas = list(params), weight_decay, eps, betas
        self.state = [None] * len(self.params)

    def step(self, grads, lr):
        beta1, beta2 = self.betas
        with torch.no_grad():
            for index, (param, grad) in enumerate(zip(self.params, grads)):
                if grad is None:
                    continue
                grad = grad + self.weight_decay * param
                if self.state[index] is None:
                    self.state[index] = [0, torch.zeros_like(param), torch.zeros_like(param)]
                state = self.state[index]
                state[0] += 1
                state[1].mul_(beta1).add_(grad, alpha=1 - beta1)
                state[2].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                step = state[0]
                denom = state[2].sqrt() / math.sqrt(1 - beta2 ** step) + self.eps
                param.sub_(lr / (1 - beta1 ** step) * state[1] / denom)


def warmup_lr(base, step, total, ratio):
    """get_linear_schedule_with_warmup's rate after ``step`` scheduler steps (mtrain.py's
    warmup_steps = int(warmup_proportion * total))."""
    warmup = int(ratio * total)
    if step < warmup:
        return base * step / max(1, warmup)
    return base * max(0.0, (total - step) / max(1, total - warmup))


def reference_step_jt_metaxl(model, raptors, layers, source, target):
    """mlt.py step_jt_metaxl for one source language, no instance weights: the summed loss and
    the gradients of theta (the model's parameters) and of the raptors, by one backward."""
    states = hidden_states(model, source)
    mask = ext_mask(source["attention_mask"])
    alpha = raptors.get_alpha()
    loss_s = 0
    for j, layer_id in enumerate(layers):
        new_h = raptors(j, states[layer_id])  # replaces h: no residual, not detached
        loss_s = loss_s + alpha[j] * ce(classifier(model, forward_tail(model, layer_id + 1, new_h, mask)), source["labels"])
    loss = loss_s + plain_loss(model, target)
    theta, phi = list(model.parameters()), raptors.parameters()
    grads = torch.autograd.grad(loss, theta + phi, allow_unused=True)
    return loss, grads[: len(theta)], grads[len(theta):]


def assert_same(ours, reference):
    for a, b in zip(ours, reference):
        if a is None or b is None:  # an unused parameter: no gradient, or an exact zero one
            assert (a is None or not a.any()) and (b is None or not b.any())
        else:
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-14)


# ---- JT w/ RTN -----------------------------------------------------------------------------------

# max_grad_norm 1e-3: a norm every step's gradient exceeds, so a clipped step would not match.
JT_RTN_CASES = {
    "last": dict(rtn_layers=["last"]),
    "middle-gated": dict(rtn_layers=["middle"], rtn_gate=True, max_grad_norm=1e-3),
    "mixture-emb+last-gated": dict(rtn_layers=[0, "last"], rtn_gate=True, max_grad_norm=1e-3),
}


@pytest.mark.parametrize("changes", JT_RTN_CASES.values(), ids=JT_RTN_CASES.keys())
def test_jt_rtn_equals_the_reference_step_jt_metaxl(changes):
    config = config_for("jt-rtn", **changes)
    assert not config.rtn_residual and not config.rtn_detached
    layers = [4 if layer == "last" else 2 if layer == "middle" else layer for layer in config.rtn_layers]
    ours_model, ref_model = tiny_model(), tiny_model()
    bank = attach_bank(ours_model, layers, gate=config.rtn_gate, residual=False)
    # Non-uniform mixture weights, so a wrong weighting shows. One placement keeps the zero logit:
    # its softmax is the constant 1 either way (ours leaves that logit out of Adam, the reference
    # decays it; zero stays zero).
    if len(layers) > 1:
        with torch.no_grad():
            bank.mix_logits.copy_(torch.linspace(-0.5, 0.5, bank.mix_logits.numel(), dtype=torch.float64).view(1, -1))
    raptors = ReferenceRaptors(bank, config.rtn_gate)
    learner = Learner(ours_model, bank, config, total_steps=TOTAL_STEPS)
    main_opt = ReferenceAdam(ref_model.parameters(), config.weight_decay)
    meta_opt = ReferenceAdam(raptors.parameters(), config.weight_decay)
    theta0 = [p.detach().clone() for p in ours_model.parameters()]
    rtns0, logits0 = [p.detach().clone() for p in bank.rtns.parameters()], bank.mix_logits.detach().clone()
    ours_phi = [t for layer in layers for t in bank.rtns[str(layer)].parameters()] + [bank.mix_logits]

    for step in range(STEPS):
        source, target = make_batch(4, seed=50 + step), make_batch(4, seed=60 + step)
        losses = learner.step(source, target)
        loss, theta_grads, phi_grads = reference_step_jt_metaxl(ref_model, raptors, layers, source, target)
        main_opt.step(theta_grads, warmup_lr(config.lr, step, TOTAL_STEPS, config.warmup_ratio))
        meta_opt.step(phi_grads, warmup_lr(config.meta_lr, step, TOTAL_STEPS, config.warmup_ratio))

        assert losses.train_loss == pytest.approx(loss.item(), rel=1e-12) and losses.meta_loss is None
        assert_same([p.grad for p in ours_model.parameters()], theta_grads)
        assert_same([p.grad for p in ours_phi], phi_grads)
        assert_same(list(ours_model.parameters()), list(ref_model.parameters()))
        assert_same(ours_phi, raptors.parameters())
    # both levels moved (warm-up leaves the first step at lr 0)
    assert any(not torch.equal(a, b) for a, b in zip(ours_model.parameters(), theta0))
    assert all(not torch.equal(a, b) for a, b in zip(bank.rtns.parameters(), rtns0))
    assert torch.equal(bank.mix_logits, logits0) is (len(layers) == 1)  # one placement: softmax is constant 1


def test_jt_rtn_residual_option_adds_the_rtn_output_to_h():
    # Our variant (--jt-rtn-residual): tail(h + g(h)); with the RTN's output zeroed it is plain JT
    # on the summed loss, while the reference's replacement would feed the layers above zeros.
    config = config_for("jt-rtn", jt_rtn_residual=True)
    assert config.rtn_residual and not config.rtn_detached
    model = tiny_model()
    with pytest.raises(ValueError, match=r"rtn: method jt-rtn with jt_rtn_residual=True needs an RTN bank built with "
                                         r"residual=True"):
        Learner(model, attach_bank(model, [4], residual=False), config, total_steps=TOTAL_STEPS)
    bank = attach_bank(model, [4], residual=True)
    with torch.no_grad():
        bank.rtns["4"].up.weight.zero_()
    source, target = make_batch(4, seed=1), make_batch(4, seed=2)
    expected = (plain_loss(model, source) + plain_loss(model, target)).item()
    losses = Learner(model, bank, config, total_steps=TOTAL_STEPS).step(source, target)
    assert losses.train_loss == pytest.approx(expected, rel=1e-12)


def test_a_residual_bank_is_refused_for_the_reference_jt_rtn():
    model = tiny_model()
    with pytest.raises(ValueError, match=r"rtn: method jt-rtn with jt_rtn_residual=False needs an RTN bank built "
                                         r"with residual=False"):
        Learner(model, attach_bank(model, [4]), config_for("jt-rtn"), total_steps=TOTAL_STEPS)


def test_backoff_finetuning_after_jt_rtn_applies_the_rtn_as_trained():
    # The fine-tuning stage's source loss is the training stage's: tail(g(h)), gated, phi frozen.
    config = config_for("jt-rtn", rtn_layers=["middle"], rtn_gate=True, lr=1e-2)
    model = tiny_model()
    bank = attach_bank(model, [2], gate=True, residual=False)
    raptors = ReferenceRaptors(bank, gate=True)
    source, target = make_batch(4, seed=3), make_batch(4, seed=4)
    states = hidden_states(model, source)
    mask = ext_mask(source["attention_mask"])
    source_loss = ce(classifier(model, forward_tail(model, 3, raptors(0, states[2]), mask)), source["labels"])
    expected = (source_loss + plain_loss(model, target)).item()
    losses = BackoffFinetuner(Learner(model, bank, config, total_steps=TOTAL_STEPS)).step(source, target)
    assert losses.train_loss == pytest.approx(expected, rel=1e-12)
    assert all(p.grad is None for p in bank.parameters())


def test_a_jt_rtn_run_builds_and_analyses_its_rtn_as_the_reference_applies_it(tmp_path, shared_cache):
    # trainer.Run builds the bank (replacing h, never detached, even with rtn_detach_input given);
    # analysis.collect_representations applies it the same way to the source sentences.
    config = RunConfig(model="tiny", data="synthetic", task="ner", target="tk", source="related", method="jt-rtn",
                       epochs=1, rtn_bottleneck=8, rtn_layers=["last"], source_size=32, batch_size=8, max_length=32,
                       device="cpu", rtn_detach_input=True)
    run = Run(config, tmp_path, cache_dir=shared_cache, progress=False, save_model=False)
    net = run.rtn.rtn(4)
    assert not net.residual and not net.detach_input
    plain = collect_representations(run, run.data.source_train, with_rtn=False, limit=30)
    moved = collect_representations(run, run.data.source_train, with_rtn=True, limit=30)
    with torch.no_grad():
        expected = F.linear(torch.relu(F.linear(plain, net.down.weight, net.down.bias)), net.up.weight, net.up.bias)
        if net.gate:
            expected = torch.sigmoid(expected[..., -1:]) * expected[..., :-1]
    torch.testing.assert_close(moved, expected)
    residual = Run(config.replace(jt_rtn_residual=True), tmp_path / "residual", cache_dir=shared_cache,
                   progress=False, save_model=False)
    assert residual.rtn.rtn(4).residual


# ---- target-only ---------------------------------------------------------------------------------

TARGET_ONLY_CASES = {"defaults": {}, "tiny-max-grad-norm": dict(max_grad_norm=1e-3)}


@pytest.mark.parametrize("changes", TARGET_ONLY_CASES.values(), ids=TARGET_ONLY_CASES.keys())
def test_target_only_equals_the_reference_step_gold_only(changes):
    config = config_for("target-only", **changes)
    ours_model, ref_model = tiny_model(), tiny_model()
    learner = Learner(ours_model, None, config, total_steps=TOTAL_STEPS)
    main_opt = ReferenceAdam(ref_model.parameters(), config.weight_decay)
    theta0 = [p.detach().clone() for p in ours_model.parameters()]
    for step in range(STEPS):
        target = make_batch(4, seed=70 + step)
        losses = learner.step(None, target)
        loss = plain_loss(ref_model, target)
        grads = torch.autograd.grad(loss, list(ref_model.parameters()), allow_unused=True)
        main_opt.step(grads, warmup_lr(config.lr, step, TOTAL_STEPS, config.warmup_ratio))

        assert losses.train_loss == pytest.approx(loss.item(), rel=1e-12)
        # unclipped: with max_grad_norm 1e-3 a clipped gradient would be ~1000 times smaller
        assert_same([p.grad for p in ours_model.parameters()], grads)
        assert_same(list(ours_model.parameters()), list(ref_model.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(ours_model.parameters(), theta0))


# ---- which methods read the options --------------------------------------------------------------


@pytest.mark.parametrize("method", ["target-only", "jt", "jt-rtn"])
def test_max_grad_norm_given_to_a_method_that_never_clips_is_refused(method):
    with pytest.raises(ConfigError) as caught:
        refuse_ignored_options(method, {"max_grad_norm", "epochs"})
    assert str(caught.value) == (f"--max-grad-norm: method {method} ignores it (only metaxl uses it); "
                                 "drop --max-grad-norm or choose --method metaxl")


def test_rtn_detach_input_is_metaxl_only():
    # step_jt_metaxl feeds the RTN the live hidden state: jt-rtn never detaches.
    assert not config_for("jt-rtn", rtn_detach_input=True).rtn_detached
    assert config_for("metaxl", rtn_detach_input=True).rtn_detached
    with pytest.raises(ConfigError, match=r"^--rtn-detach-input: method jt-rtn ignores it \(only metaxl uses it\)"):
        refuse_ignored_options("jt-rtn", {"rtn_detach_input"})


def test_jt_rtn_residual_is_read_by_jt_rtn_alone():
    refuse_ignored_options("jt-rtn", {"jt_rtn_residual"})
    for method in ("target-only", "jt", "metaxl"):
        with pytest.raises(ConfigError, match=r"^--jt-rtn-residual: method \S+ ignores it \(only jt-rtn uses it\); "
                                              r"drop --jt-rtn-residual or choose --method jt-rtn$"):
            refuse_ignored_options(method, {"jt_rtn_residual"})
