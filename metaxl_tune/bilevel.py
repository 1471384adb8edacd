"""One training step of each method: target-only, JT, JT w/ RTN and MetaXL (pure PyTorch).

Notation follows the paper (Xia et al., NAACL 2021, section 2): theta are the encoder and head
parameters, phi the RTN parameters, (x_s, y_s) a source batch, (x_t, y_t) a target batch.
MetaXL solves the bi-level problem (paper Eq. 3-4)

    min_phi  L(D_t; theta*(phi))    s.t.  theta*(phi) = argmin_theta L(D_s; theta, phi)

approximately, with one look-ahead step per batch (paper Algorithm 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from transformers import get_linear_schedule_with_warmup

from metaxl_tune.config import RunConfig
from metaxl_tune.model.attention import second_order_attention
from metaxl_tune.model.rtn import RTNBank
from metaxl_tune.precision import Precision

Batch = Mapping[str, torch.Tensor]
IGNORE_INDEX = -100


def task_loss(model: nn.Module, batch: Batch, params: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
    """Mean cross-entropy over labelled positions (NER: first sub-tokens; SA: one per sentence).

    With ``params`` the model runs with those tensors in place of its own parameters, which is
    how theta' = theta - alpha * grad stays differentiable with respect to phi.
    """
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    logits = (functional_call(model, dict(params), (), inputs) if params is not None else model(**inputs)).logits
    return F.cross_entropy(logits.flatten(0, -2), batch["labels"].flatten(), ignore_index=IGNORE_INDEX)


def split_target(batch: Batch, portion: int) -> tuple[Batch | None, Batch]:
    """Reference-code split: the last 1/portion of the target batch is the meta batch, the
    rest joins the training loss as plain joint training (portion 1: all of it is meta)."""
    size = batch["input_ids"].shape[0]
    meta_size = max(1, size // portion)
    if meta_size == size:
        return None, batch
    head = {key: value[: size - meta_size] for key, value in batch.items()}
    tail = {key: value[size - meta_size :] for key, value in batch.items()}
    return head, tail


def warmup_schedule(optimizer: torch.optim.Optimizer, total_steps: int, warmup_ratio: float):
    return get_linear_schedule_with_warmup(optimizer, int(warmup_ratio * total_steps), total_steps)


@dataclass
class StepLosses:
    train_loss: float
    meta_loss: float | None = None


class Learner:
    """Holds theta's and phi's optimizers and applies one step of the configured method."""

    def __init__(self, model: nn.Module, rtn: RTNBank | None, config: RunConfig, *, total_steps: int):
        if config.uses_rtn and rtn is None:
            raise ValueError(f"method {config.method} needs an RTN")
        self.model = model
        self.rtn = rtn if config.uses_rtn else None
        self._source_index = 0
        self.config = config
        # Autocast for every forward, one loss scaler for both optimizers (fp16).
        self.precision = Precision(config.precision, next(model.parameters()).device)
        self.theta = {name: p for name, p in model.named_parameters() if p.requires_grad}
        # Adam with linear warm-up for both levels, as in the reference code.
        self.main_opt = torch.optim.Adam(self.theta.values(), lr=config.lr)
        self.main_schedule = warmup_schedule(self.main_opt, total_steps, config.warmup_ratio)
        self.meta_opt = self.meta_schedule = None
        if self.rtn is not None:
            self.meta_opt = torch.optim.Adam(self.rtn.parameters(), lr=config.meta_lr)
            self.meta_schedule = warmup_schedule(self.meta_opt, total_steps, config.warmup_ratio)

    # ---- shared pieces -------------------------------------------------------------------

    @property
    def current_lr(self) -> float:
        return self.main_opt.param_groups[0]["lr"]

    def loss(self, batch: Batch, params: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        """task_loss under the run's autocast: every forward of every method goes through here."""
        with self.precision.autocast():
            return task_loss(self.model, batch, params)

    def source_loss(self, source: Batch) -> torch.Tensor:
        """L(x_s; theta, phi): the source forward with every RTN (of this step's source set) applied."""
        if self.rtn is None:
            return self.loss(source)
        with self.rtn.applied(self._source_index if self.rtn.num_sources > 1 else 0):
            return self.loss(source)

    def _main_step(self) -> None:
        if self.config.max_grad_norm is not None:
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
        # multi-source (sources branch, minimal): which source language the batch is from; it
        # selects that language's RTN set when the bank has one per source (rtn_per_source).
        self._source_index = source_index
        self.model.train()
        self._zero_grad()
        method = self.config.method
        if method == "target-only":
            losses = self._plain_step(self.loss(target))
        elif method == "jt":
            losses = self._plain_step(self.loss(source) + self.loss(target))
        elif method == "jt-rtn":
            losses = self._plain_step(self.source_loss(source) + self.loss(target))
        else:
            losses = self.metaxl_step(source, target)
        # One scale update per training step, after both optimizers stepped (fp16 only).
        self.precision.update()
        return losses

    def _plain_step(self, loss: torch.Tensor) -> StepLosses:
        """Single-level training (target-only, JT, and JT w/ RTN, paper section 4.4, where phi
        is trained on the same loss as theta, by ordinary back-propagation)."""
        self.precision.scale(loss).backward()
        if self.meta_opt is not None:
            self._meta_step()
        self._main_step()
        return StepLosses(train_loss=loss.item())

    def metaxl_step(self, source: Batch, target: Batch) -> StepLosses:
        """Paper Algorithm 1, lines 4-7, with the reference code's target split."""
        target_train, target_meta = split_target(target, self.config.portion)

        # L_train(theta, phi) = L(x_s; theta, phi) + L(x_t_train; theta)   [paper Eq. 3, inner]
        # The one forward differentiated twice: math attention kernel (fused SDPA has no
        # double backward); the look-ahead forward below keeps the fused kernels.
        with second_order_attention():
            train_loss = self.source_loss(source)
            if target_train is not None:
                train_loss = train_loss + self.loss(target_train)

        # grad_theta L_train, kept differentiable in phi (create_graph) for the hypergradient.
        # With fp16 the loss is scaled by S; theta' below uses the unscaled gradient.
        names = list(self.theta)
        grads = torch.autograd.grad(
            self.precision.scale(train_loss), list(self.theta.values()), create_graph=True, allow_unused=True
        )

        # theta' = theta - alpha * grad_theta L_train                          [Algorithm 1, line 5]
        alpha = self.config.lookahead_lr if self.config.lookahead_lr is not None else self.current_lr
        lookahead = {
            name: param if grad is None else param - alpha * grad
            for name, param, grad in zip(names, self.theta.values(), self.precision.unscale(grads))
        }

        # phi <- phi - beta * grad_phi L(x_t_meta; theta')                   [Algorithm 1, line 6]
        # grad_phi L(theta') = -alpha * grad_phi <grad_theta L_train, grad_theta' L_meta>: a
        # Hessian-vector product that autograd takes through the create_graph gradient above.
        meta_loss = self.loss(target_meta, params=lookahead)
        phi = list(self.rtn.parameters())
        # allow_unused: with one RTN set per source language, the other languages' sets get no gradient.
        for param, grad in zip(phi, torch.autograd.grad(self.precision.scale(meta_loss), phi, allow_unused=True)):
            param.grad = grad
        self._meta_step()

        # theta <- theta - lr * grad_theta L_train                               [Algorithm 1, line 7]
        if self.config.theta_update == "algorithm1":
            # Reuse the gradient already computed at the old phi (still scaled by S: the
            # scaler unscales it in _main_step like any backward's gradient).
            for param, grad in zip(self.theta.values(), grads):
                param.grad = None if grad is None else grad.detach()
        else:
            # Reference code: recompute the training loss with the updated phi and step on that.
            del grads, lookahead
            train_loss = self.source_loss(source)
            if target_train is not None:
                train_loss = train_loss + self.loss(target_train)
            self.precision.scale(train_loss).backward(inputs=list(self.theta.values()))
        self._main_step()
        return StepLosses(train_loss=train_loss.item(), meta_loss=meta_loss.item())

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

    theta keeps training on L(x_s; theta, phi) + L(x_t; theta) with the learned RTN applied and
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
        learner._source_index = source_index
        self.optimizer.zero_grad(set_to_none=True)
        loss = learner.source_loss(source) + learner.loss(target)
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
