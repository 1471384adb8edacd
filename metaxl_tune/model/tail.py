"""Forward passes split at an RTN placement: the reference's multi-placement source forward.

The reference (microsoft/MetaXL ``models.py: forward_tail``, ``mlt.py: step_metaxl``) runs the
source batch through the encoder once, then for each placement k re-runs only the layers above k
on ``h_k + g_k(h_k)`` and mixes the per-placement losses by softmax of learned logits. Placement 0
(after the embeddings) re-runs every layer; placement L (after the last layer) only the head.

``EncoderSplit`` does this with the model's own forward code, so masks, heads and poolers stay
the library's: for the lower pass the encoder's layer list is cut at the highest placement and
the hidden states are captured by hooks; for a tail pass the embeddings module is replaced by
one that returns the given hidden state and the layer list by the layers above the placement.
The swaps last for one call and are undone in ``finally``.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from typing import Callable, Iterator, Mapping, Sequence

import torch
from torch import nn
from torch.func import functional_call

from metaxl_tune.model.backbone import encoder_modules

Batch = Mapping[str, torch.Tensor]


class _Given(nn.Module):
    """Stands in for the embeddings module and returns a hidden state computed elsewhere."""

    def __init__(self, hidden: torch.Tensor):
        super().__init__()
        self.hidden = hidden

    def forward(self, *_args, **_kwargs) -> torch.Tensor:
        return self.hidden


class _Bound(nn.Module):
    """Makes any function of ``model`` callable through ``functional_call`` (public API), so a
    split forward can run with substituted parameters (theta +- eps v in the finite difference)."""

    def __init__(self, model: nn.Module, fn: Callable):
        super().__init__()
        self.model = model
        self.fn = fn

    def forward(self, *args):
        return self.fn(*args)


def call_with_params(model: nn.Module, params: Mapping[str, torch.Tensor] | None, fn: Callable, *args):
    """``fn(*args)`` with ``model``'s parameters replaced by ``params`` (when given) for the call."""
    if params is None:
        return fn(*args)
    bound = _Bound(model, fn)
    return functional_call(bound, {f"model.{name}": value for name, value in params.items()}, args, strict=False)


def _owner(root: nn.Module, target: nn.Module) -> tuple[nn.Module, str]:
    for module in root.modules():
        for name, child in module.named_children():
            if child is target:
                return module, name
    raise ValueError(f"{type(target).__name__} is not a submodule of {type(root).__name__}")


@contextmanager
def _swapped(parent: nn.Module, name: str, replacement: nn.Module) -> Iterator[None]:
    original = parent._modules[name]
    parent._modules[name] = replacement
    try:
        yield
    finally:
        parent._modules[name] = original


class EncoderSplit:
    """A model's encoder, runnable up to a placement (``states``) and from one (``tail_logits``)."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.embeddings, self.layers = encoder_modules(model)
        self._embeddings_at = _owner(model, self.embeddings)
        self._layers_at = _owner(model, self.layers)

    def states(self, batch: Batch, placements: Sequence[int]) -> dict[int, torch.Tensor]:
        """One pass over the layers up to the highest placement (the reference's single encoder
        pass over the source batch); the hidden state after each placement (0 = embeddings)."""
        captured: dict[int, torch.Tensor] = {}

        def capture(placement: int):
            def hook(_module, _inputs, output):
                captured[placement] = output[0] if isinstance(output, tuple) else output

            return hook

        top = max(placements)
        with ExitStack() as stack:
            for placement in placements:
                module = self.embeddings if placement == 0 else self.layers[placement - 1]
                stack.callback(module.register_forward_hook(capture(placement)).remove)
            stack.enter_context(_swapped(*self._layers_at, nn.ModuleList(list(self.layers)[:top])))
            self.model.base_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        return captured

    def tail_logits(self, hidden: torch.Tensor, placement: int, batch: Batch) -> torch.Tensor:
        """Logits of the layers above ``placement`` and the head, run on ``hidden`` (reference
        ``forward_tail(placement + 1, hidden)`` followed by ``forward_classifier``)."""
        with self._tail(hidden, placement):
            return self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits

    def tail_states(self, hidden: torch.Tensor, placement: int, batch: Batch) -> torch.Tensor:
        """The final layer's hidden states of the layers above ``placement`` run on ``hidden``
        (the reference's ``forward_tail`` without the classifier)."""
        with self._tail(hidden, placement):
            return self.model.base_model(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
            ).last_hidden_state

    @contextmanager
    def _tail(self, hidden: torch.Tensor, placement: int) -> Iterator[None]:
        with _swapped(*self._embeddings_at, _Given(hidden)), _swapped(
            *self._layers_at, nn.ModuleList(list(self.layers)[placement:])
        ):
            yield
