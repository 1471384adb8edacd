"""One training step of each method: target-only, JT, JT w/ RTN and MetaXL (pure PyTorch).

Notation follows the paper (Xia et al., NAACL 2021, section 2): theta are the encoder and head
parameters, phi the RTN parameters, (x_s, y_s) a source batch, (x_t, y_t) a target batch.
MetaXL solves the bi-level problem (paper Eq. 3-4)

    min_phi  L(D_t; theta*(phi))    s.t.  theta*(phi) = argmin_theta L(D_s; theta, phi)

approximately, with one look-ahead step per batch (paper Algorithm 1).

Over ~400 lines as one job, the step of each method, with the losses it differentiates: the
methods share the ``Learner``'s optimizers, schedules, precision and RTN split, and MetaXL's
step (look-ahead, hypergradient, theta update) reads as one unit beside the paper's equations
and the reference code it restates (tests/train/test_bilevel*.py restate it in float64).
"""

from __future__ import annotations

from contextlib import ExitStack, nullcontext
from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from transformers import get_linear_schedule_with_warmup

from metaxl_tune.config import RunConfig
from metaxl_tune.model.attention import second_order_attention
from metaxl_tune.model.random_draws import draws_for
from metaxl_tune.model.rtn import RTNBank
from metaxl_tune.model.tail import EncoderSplit, call_with_params
from metaxl_tune.train.precision import Precision

Batch = Mapping[str, torch.Tensor]
IGNORE_INDEX = -100


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over labelled positions (NER: first sub-tokens; SA: one per sentence)."""
    return F.cross_entropy(logits.flatten(0, -2), labels.flatten(), ignore_index=IGNORE_INDEX)


def task_loss(model: nn.Module, batch: Batch, params: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
    """The plain forward and its loss: target batches, and source batches for the stack combination
    (with the RTN hooks active).

    With ``params`` the model runs with those tensors in place of its own parameters, which is
    how theta' = theta - alpha * grad stays differentiable with respect to phi.
    """
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    logits = (functional_call(model, dict(params), (), inputs) if params is not None else model(**inputs)).logits
    return cross_entropy(logits, batch["labels"])


def mixture_loss(split: EncoderSplit, bank: RTNBank, batch: Batch, source_index: int = 0) -> torch.Tensor:
    """sum_k softmax(a_s)_k * L(tail_k(h_k + g_k(h_k))): the reference's multi-placement source loss
    (``mlt.py: step_metaxl`` and ``step_jt_metaxl``, their loop over ``transfer_layers``; JT w/ RTN
    runs tail_k(g_k(h_k)), the RTN's ``residual`` off). One pass over the layers up to the
    highest placement gives every h_k; each placement then re-runs only the layers above it."""
    return mixture_tail_loss(split, bank, split.states(batch, bank.layers), batch, source_index)


def mixture_tail_loss(
    split: EncoderSplit, bank: RTNBank, states: Mapping[int, torch.Tensor], batch: Batch, source_index: int = 0
) -> torch.Tensor:
    """The part of ``mixture_loss`` above the placements, on given hidden states ``states[k] = h_k``."""
    weights = bank.mixture_weights(source_index)
    loss = 0
    for weight, layer in zip(weights, bank.layers):
        hidden = bank.transform(layer, source_index, states[layer])
        loss = loss + weight * cross_entropy(split.tail_logits(hidden, layer, batch), batch["labels"])
    return loss


def split_target(batch: Batch, portion: int) -> tuple[Batch | None, Batch]:
    """The reference's split (``mtrain.py``: ``half = int(len / portion)``): the first
    ``n // portion`` target examples join the training loss as plain joint training, the other
    ``n - n // portion`` are the meta batch. Returns ``(train_part, meta_part)``.

    ``portion 1`` is our extension: every example is meta and none joins the training loss (the
    reference would take all of them for training and skip the step, its meta batch being empty).
    A batch too small to give the training share an example is likewise all meta.
    """
    size = batch["input_ids"].shape[0]
    train_size = 0 if portion == 1 else size // portion
    if train_size == 0:
        return None, batch
    head = {key: value[:train_size] for key, value in batch.items()}
    tail = {key: value[train_size:] for key, value in batch.items()}
    return head, tail


def warmup_schedule(optimizer: torch.optim.Optimizer, total_steps: int, warmup_ratio: float):
    return get_linear_schedule_with_warmup(optimizer, int(warmup_ratio * total_steps), total_steps)


# The finite-difference hypergradient moves theta by eps = FD_STEP / ||v|| times v: a step of fixed
# length FD_STEP. DARTS (Liu et al. 2019, Eq. 8) uses 0.01. Through the RTN's ReLU a difference is
# only right while no RTN unit crosses its kink between theta- and theta+; a crossing spoils the
# estimate whatever the step, but its chance grows with the step length. On the tiny model the
# cosine with the exact hypergradient is 0.32 at 0.01, 0.09 at 1e-3, 0.15 or 1.0 at 1e-4
# (depending on the batch), >= 0.9998 at 1e-5 in float32 and float64 (1e-6: float32 noise, 0.994).
FD_STEP = 1e-5
# The reference's Adam epsilon (mtrain.py, --adam_epsilon).
ADAM_EPS = 1e-8


def _summed(first: list[torch.Tensor | None], second: list[torch.Tensor | None]) -> list[torch.Tensor | None]:
    """Elementwise first + second, None where both are None (parameters neither part uses)."""
    return [a if b is None else b if a is None else a + b for a, b in zip(first, second)]


def _moved(values: list[torch.Tensor], steps: list[torch.Tensor | None], scale: float) -> list[torch.Tensor]:
    """values + scale * steps (a None step leaves its value as is), as two fused ops over every
    tensor with the rounding of ``value + scale * step`` (the reference's arithmetic, so the
    reference restatement in tests/train/test_bilevel.py agrees to 1e-9); differentiable, so the exact
    hypergradient's look-ahead keeps its graph."""
    moving = [index for index, step in enumerate(steps) if step is not None]
    moved = list(values)
    scaled = torch._foreach_mul([steps[i] for i in moving], scale)
    for index, value in zip(moving, torch._foreach_add([values[i] for i in moving], scaled)):
        moved[index] = value
    return moved


@dataclass
class StepLosses:
    train_loss: float
    meta_loss: float | None = None


class Learner:
    """Holds theta's and phi's optimizers and applies one step of the configured method.

    phi is every parameter of the RTN bank: the RTNs and the mixture logits (reference: Raptors'
    nets and ``alpha``, both stepped by ``meta_opt``).
    """

    def __init__(self, model: nn.Module, rtn: RTNBank | None, config: RunConfig, *, total_steps: int):
        if config.uses_rtn and rtn is None:
            raise ValueError(f"method {config.method} needs an RTN")
        if config.uses_rtn and any(net.residual != config.rtn_residual for net in rtn.rtns.values()):
            raise ValueError(
                f"rtn: method {config.method} with jt_rtn_residual={config.jt_rtn_residual} needs an RTN bank "
                f"built with residual={config.rtn_residual} (RunConfig.rtn_residual)"
            )
        self.model = model
        self.rtn = rtn if config.uses_rtn else None
        self.config = config
        # Autocast for every forward, one loss scaler for both optimizers (fp16).
        self.precision = Precision(config.precision, next(model.parameters()).device)
        self.theta = {name: p for name, p in model.named_parameters() if p.requires_grad}
        # With one placement the mixture is the plain forward with weight softmax(a) = 1. The
        # split forward also serves MetaXL's source loss, cut below the RTNs (metaxl_step).
        self.mixture = self.rtn is not None and config.rtn_combine == "mixture" and len(self.rtn.layers) > 1
        self.split = EncoderSplit(model) if self.rtn is not None else None
        # Adam (L2 weight decay added to the gradient, torch.optim.Adam as in mtrain.py, not
        # AdamW) with linear warm-up for both levels.
        self.main_opt = torch.optim.Adam(
            self.theta.values(), lr=config.lr, eps=ADAM_EPS, weight_decay=config.weight_decay
        )
        self.main_schedule = warmup_schedule(self.main_opt, total_steps, config.warmup_ratio)
        self.meta_opt = self.meta_schedule = None
        if self.rtn is not None:
            self.meta_opt = torch.optim.Adam(
                self.rtn.parameters(), lr=config.meta_lr, eps=ADAM_EPS, weight_decay=config.weight_decay
            )
            self.meta_schedule = warmup_schedule(self.meta_opt, total_steps, config.warmup_ratio)

    # ---- shared pieces -------------------------------------------------------------------

    @property
    def current_lr(self) -> float:
        return self.main_opt.param_groups[0]["lr"]

    def loss(self, batch: Batch, params: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        """task_loss under the run's autocast: every plain forward of every method goes through here."""
        with self.precision.autocast():
            return task_loss(self.model, batch, params)

    def source_loss(
        self, source: Batch, params: Mapping[str, torch.Tensor] | None = None, *, source_index: int = 0
    ) -> torch.Tensor:
        """L(x_s; theta, phi) with source language ``source_index``'s RTNs, combined as configured;
        ``params`` replaces theta for the call."""
        if self.rtn is None:
            return self.loss(source, params)
        if not self.mixture:
            with self.rtn.applied(source_index):
                return self.loss(source, params)
        with self.precision.autocast():
            return call_with_params(self.model, params, mixture_loss, self.split, self.rtn, source, source_index)

    def _main_step(self, *, clip: bool = True) -> None:
        # Only MetaXL's step clips (reference step_metaxl; step_gold_only, step_gold_mix and
        # step_jt_metaxl do not): single-level steps pass clip=False.
        if clip and self.config.max_grad_norm is not None:
            # Clip the true gradient: unscale first (fp16), as torch.amp prescribes.
            self.precision.unscale_(self.main_opt)
            torch.nn.utils.clip_grad_norm_(self.theta.values(), self.config.max_grad_norm)
        self.precision.step(self.main_opt)
        self.main_schedule.step()

    def _meta_step(self) -> None:
        self.precision.step(self.meta_opt)
        self.meta_schedule.step()

    def _zero_grad(self) -> None:
        self.main_opt.zero_grad(set_to_none=True)
        if self.meta_opt is not None:
            self.meta_opt.zero_grad(set_to_none=True)

    # ---- the methods -----------------------------------------------------------------------

    def step(self, source: Batch | None, target: Batch, *, source_index: int = 0) -> StepLosses:
        """One step; ``source_index`` picks the source language's RTNs and mixture logits."""
        self.model.train()
        self._zero_grad()
        method = self.config.method
        if method == "target-only":
            # Reference gold_only (mlt.py: step_gold_only): the target loss alone.
            losses = self._plain_step(self.loss(target))
        elif method == "jt":
            # Reference joint_training (mlt.py: step_gold_mix): the mean of the two losses.
            losses = self._plain_step((self.loss(source) + self.loss(target)) / 2)
        elif method == "jt-rtn":
            # Reference jt-metaxl (mlt.py: step_jt_metaxl): L(x_s; theta, phi) + L(x_t; theta) summed,
            # the whole target batch (no portion split); by default the RTN output replaces h and
            # reads it undetached (trainer.Run builds the bank from RunConfig.rtn_residual).
            losses = self._plain_step(self.source_loss(source, source_index=source_index) + self.loss(target))
        else:
            losses = self.metaxl_step(source, target, source_index=source_index)
        # One scale update per training step, after both optimizers stepped (fp16 only).
        self.precision.update()
        return losses

    def _plain_step(self, loss: torch.Tensor) -> StepLosses:
        """Single-level training (target-only, JT, and JT w/ RTN, paper section 4.4, where phi
        is trained on the same loss as theta, by ordinary back-propagation, and stepped by its
        own Adam and schedule). No clipping: none of the reference's single-level steps clips."""
        self.precision.scale(loss).backward()
        if self.meta_opt is not None:
            self._meta_step()
        self._main_step(clip=False)
        return StepLosses(train_loss=loss.item())

    def metaxl_step(self, source: Batch, target: Batch, *, source_index: int = 0) -> StepLosses:
        """Paper Algorithm 1, lines 4-7, with the reference code's target split and (theta_update
        'recompute', the default) the reference's recomputed theta step (``mlt.py: step_metaxl``)."""
        target_train, target_meta = split_target(target, self.config.portion)
        finite_difference = self.config.hypergradient == "finite-difference"
        recompute = self.config.theta_update == "recompute"
        theta = list(self.theta.values())
        draws = draws_for(theta[0].device) if finite_difference else None

        # L_train(theta, phi) = L(x_s; theta, phi) + L(x_t_train; theta)   [paper Eq. 3, inner]
        # Its two parts are differentiated apart: only the source part depends on phi, so only its
        # gradient needs the second-order graph (exact) and only it changes when phi is updated
        # (recompute). The finite difference records the source forward's dropout masks and RTN
        # inputs for its replays at theta +- eps v.
        with ExitStack() as stack:
            if finite_difference:
                stack.enter_context(draws.recording())
                stack.enter_context(self.rtn.inputs_recorded())
            else:
                # The one forward differentiated twice: math attention kernel (fused SDPA has no
                # double backward); every other forward keeps the fused kernels.
                stack.enter_context(second_order_attention())
            source_loss, below = self._metaxl_source_loss(source, source_index)
        # grad_theta L_s, kept differentiable in phi (create_graph) for the exact hypergradient;
        # its graph below the RTNs is kept for the recompute. Scaled by S under fp16.
        source_grads = torch.autograd.grad(
            self.precision.scale(source_loss), theta, create_graph=not finite_difference,
            retain_graph=recompute or not finite_difference, allow_unused=True,
        )
        target_loss, target_grads = None, [None] * len(theta)
        if target_train is not None:
            target_loss = self.loss(target_train)
            target_grads = torch.autograd.grad(self.precision.scale(target_loss), theta, allow_unused=True)
        grads = _summed(source_grads, target_grads)
        del source_grads

        alpha = self.config.lookahead_lr if self.config.lookahead_lr is not None else self.current_lr
        phi = list(self.rtn.parameters())
        if finite_difference:
            meta_loss, hypergradient = self._finite_difference_hypergradient(
                grads, source, source_index, target_meta, alpha, phi, draws
            )
        else:
            meta_loss, hypergradient = self._exact_hypergradient(grads, target_meta, alpha, phi, retain=recompute)
        # phi <- phi - beta * grad_phi L(x_t_meta; theta')                   [Algorithm 1, line 6]
        for param, grad in zip(phi, hypergradient):
            param.grad = grad  # None for the RTNs of other source languages: Adam skips them
        self._meta_step()

        # theta <- theta - lr * grad_theta L_train                               [Algorithm 1, line 7]
        if not recompute:
            # Reuse the gradient already computed at the old phi (still scaled by S under fp16:
            # the scaler unscales it in _main_step like any backward's gradient).
            for param, grad in zip(theta, grads):
                param.grad = None if grad is None else grad.detach()
        else:
            # Reference code: recompute the training loss with the updated phi and step on that.
            # Only what phi's update changes is recomputed: the RTNs and the layers above them,
            # on the first pass's hidden states (their graph kept), whose backward reaches the
            # lower layers through the residual; the target part's gradient is reused. That
            # reuses the first pass's dropout masks below the RTNs where the reference draws
            # fresh ones: both are one draw of the same masks' distribution, so theta's step is
            # the same stochastic gradient in distribution, for the cost of the tails alone.
            del grads
            with self.precision.autocast():
                source_loss = self._source_above(below, source, source_index)
            self.precision.scale(source_loss).backward(inputs=theta)
            for param, grad in zip(theta, target_grads):
                if grad is not None:
                    param.grad = grad if param.grad is None else param.grad + grad
        del below
        train_loss = source_loss.detach() + (0 if target_loss is None else target_loss.detach())
        self._main_step()
        return StepLosses(train_loss=float(train_loss), meta_loss=meta_loss.item())

    # ---- the MetaXL source forward, split at the RTNs -------------------------------------------

    def _metaxl_source_loss(
        self, source: Batch, source_index: int, params: Mapping[str, torch.Tensor] | None = None, *,
        constant_below: bool = False,
    ) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """L(x_s; theta, phi) as (loss, hidden states below the RTNs): the split forward of
        ``_source_below`` and ``_source_above``, with ``params`` in place of theta when given.
        ``constant_below`` runs the part below the RTNs without a graph: for a loss only
        differentiated in phi, which first acts above it."""

        def run():
            with torch.no_grad() if constant_below else nullcontext():
                below = self._source_below(source)
            return self._source_above(below, source, source_index), below

        with self.precision.autocast():
            return call_with_params(self.model, params, run)

    def _source_below(self, source: Batch) -> dict[int, torch.Tensor]:
        """The source forward that phi cannot change: the hidden state at every placement of the
        mixture (one pass, as the reference's), or at the lowest placement of the stack."""
        layers = self.rtn.layers if self.mixture else self.rtn.layers[:1]
        return self.split.states(source, layers)

    def _source_above(self, below: dict[int, torch.Tensor], source: Batch, source_index: int) -> torch.Tensor:
        """The RTNs and the layers above them, on the hidden states of ``_source_below``."""
        if self.mixture:
            return mixture_tail_loss(self.split, self.rtn, below, source, source_index)
        lowest = self.rtn.layers[0]
        hidden = self.rtn.transform(lowest, source_index, below[lowest])
        with self.rtn.applied(source_index):  # the stack's higher placements, by their hooks
            return cross_entropy(self.split.tail_logits(hidden, lowest, source), source["labels"])

    # ---- phi's gradient ---------------------------------------------------------------------------

    def _exact_hypergradient(self, grads, target_meta: Batch, alpha: float, phi: list[torch.Tensor], *,
                             retain: bool):
        """grad_phi L_meta(theta - alpha * grad_theta L_train(theta, phi)), exactly; ``grads`` is
        grad_theta L_train (scaled under fp16) with its graph in phi."""
        names, values = list(self.theta), list(self.theta.values())
        # theta' = theta - alpha * grad_theta L_train                          [Algorithm 1, line 5]
        lookahead = dict(zip(names, _moved(values, self.precision.unscale(grads), -alpha)))
        # grad_phi L(theta') = -alpha * grad_phi <grad_theta L_train, grad_theta' L_meta>: a
        # Hessian-vector product that autograd takes through the create_graph gradient above.
        # Scaled like every gradient under fp16; the meta optimizer's step unscales it. The
        # graph is kept for the recompute, which backpropagates through the source forward.
        meta_loss = self.loss(target_meta, params=lookahead)
        hypergradient = torch.autograd.grad(
            self.precision.scale(meta_loss), phi, retain_graph=retain, allow_unused=True
        )
        return meta_loss.detach(), hypergradient

    def _finite_difference_hypergradient(self, grads, source: Batch, source_index: int, target_meta: Batch,
                                         alpha: float, phi: list[torch.Tensor], draws):
        """The DARTS estimate of the same hypergradient, with no second-order graph:

            grad_phi L_meta(theta') ~ -alpha * [grad_phi L_train(theta+, phi) - grad_phi L_train(theta-, phi)] / (2 eps)
            theta+- = theta +- eps * v,   v = grad_theta' L_meta(theta'),   eps = FD_STEP / ||v||

        so theta moves by exactly FD_STEP (1e-5; DARTS's 0.01 crosses the RTN's ReLU kinks, see
        FD_STEP) in the direction of v whatever v's scale. Only the source part of L_train depends
        on phi, so only it is evaluated at theta+-, with the dropout masks of the training
        forward's source pass (model/random_draws.py): all three are the same stochastic
        function of theta, so the difference measures theta's effect and not dropout noise. The
        two gradients are taken as one, of L(theta+) - L(theta-), by one backward.

        With a detached RTN input (the default), grad_theta L_train treats the RTN input as a
        constant c = h(theta), so v . grad_theta L_train = d/de L(theta + e v, phi; c fixed) and
        the difference must hold c too: the shifted forwards feed each RTN the input recorded in
        the training forward while the residual adds their own (shifted) hidden state
        (``RTNBank.inputs_replayed``). Without it the estimate is of the undetached hypergradient.

        The reference's ``step_mlt_multi_fd`` differs: a fixed eps = 1e-3 (the norm scaling is
        commented out there), perturbations applied in place to theta and undone by adding them
        back (we evaluate at fresh detached tensors, theta itself never changes), the whole
        training loss (target part included) evaluated at theta+-, and fresh dropout masks.
        """
        names, values = list(self.theta), list(self.theta.values())
        # theta' = theta - alpha * grad_theta L_train, detached: v is a plain first-order gradient.
        detached = [param.detach() for param in values]
        lookahead = {name: value.requires_grad_()
                     for name, value in zip(names, _moved(detached, self.precision.unscale(grads), -alpha))}
        meta_loss = self.loss(target_meta, params=lookahead)
        direction = self.precision.unscale(
            torch.autograd.grad(self.precision.scale(meta_loss), list(lookahead.values()), allow_unused=True)
        )
        del lookahead
        direction = [torch.zeros_like(p) if d is None else d for p, d in zip(values, direction)]
        norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(direction)))
        if norm == 0:  # L_meta is flat at theta': the hypergradient is zero
            return meta_loss.detach(), [torch.zeros_like(p) for p in phi]
        eps = FD_STEP / norm.item()

        def shifted_source_loss(sign: float) -> torch.Tensor:
            shifted = dict(zip(names, _moved(detached, direction, sign * eps)))
            with draws.replaying(), self.rtn.inputs_replayed():
                return self._metaxl_source_loss(source, source_index, shifted, constant_below=True)[0]

        # grad_phi L(theta+) - grad_phi L(theta-) = grad_phi [L(theta+) - L(theta-)]. Scaled under
        # fp16 (so is the hypergradient below); the meta optimizer's step unscales it.
        difference = shifted_source_loss(1.0) - shifted_source_loss(-1.0)
        change = torch.autograd.grad(self.precision.scale(difference), phi, allow_unused=True)
        hypergradient = [None if d is None else -alpha * d / (2 * eps) for d in change]
        return meta_loss.detach(), hypergradient

    # ---- checkpointing -------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        state = {"main_opt": self.main_opt.state_dict(), "main_schedule": self.main_schedule.state_dict()}
        if self.precision.scaling:  # fp16: the loss scale resumes where it was
            state["scaler"] = self.precision.state_dict()
        if self.meta_opt is not None:
            state["meta_opt"] = self.meta_opt.state_dict()
            state["meta_schedule"] = self.meta_schedule.state_dict()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.main_opt.load_state_dict(state["main_opt"])
        self.main_schedule.load_state_dict(state["main_schedule"])
        self.precision.load_state_dict(state.get("scaler", {}))
        if self.meta_opt is not None:
            self.meta_opt.load_state_dict(state["meta_opt"])
            self.meta_schedule.load_state_dict(state["meta_schedule"])


class BackoffFinetuner:
    """Back-off fine-tuning after the MetaXL (or JT w/ RTN) epochs (paper section 4.6; reference
    ``mtrain.py --do_finetune`` with ``mlt.py: step_metaxl_finetune``).

    theta keeps training on L(x_s; theta, phi) + L(x_t; theta) with the learned RTN applied as
    it was trained (``Learner.source_loss``: residual after MetaXL, replacing h after JT w/ RTN) and
    phi frozen. As the reference's fine-tuning stage: a fresh Adam on theta at the main learning
    rate with no schedule (``mtrain.py`` builds its schedulers only for ``--do_train``), the whole
    target batch in the loss (no ``portion`` split), the two losses summed, no gradient clipping.
    """

    def __init__(self, learner: Learner):
        self.learner = learner
        # Same Adam settings as the main optimizer (eps, weight decay), undecayed learning rate.
        defaults = {key: learner.main_opt.defaults[key] for key in ("betas", "eps", "weight_decay")}
        self.optimizer = torch.optim.Adam(learner.theta.values(), lr=learner.config.lr, **defaults)

    def step(self, source: Batch, target: Batch, *, source_index: int = 0) -> StepLosses:
        learner = self.learner
        learner.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss = learner.source_loss(source, source_index=source_index) + learner.loss(target)
        # Gradients for theta only: phi stays as the MetaXL stage left it. The run's precision
        # (autocast, fp16 loss scaling) applies here as in the MetaXL stage.
        learner.precision.scale(loss).backward(inputs=list(learner.theta.values()))
        learner.precision.step(self.optimizer)
        learner.precision.update()
        return StepLosses(train_loss=loss.item())

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
