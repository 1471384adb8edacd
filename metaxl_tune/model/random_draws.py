"""The same dropout masks in several forwards: the finite-difference hypergradient's replays.

The finite-difference hypergradient (train/bilevel.py, ``_finite_difference_hypergradient``)
evaluates the source loss at theta + eps v and theta - eps v. Both forwards must draw the
dropout masks of the training forward they are compared with, or the difference measures
dropout noise instead of theta's effect. Two ways to get them:

* ``RecordedDraws`` (CPU): the training forward's random tensors (dropout masks, those drawn
  inside SDPA's attention dropout, any other random op) are recorded as they are drawn and
  handed back to the replays, which draw nothing. On a CPU, drawing masks is about a third of a
  training forward (``aten::bernoulli_``, one element at a time; bench/step.py's profile), so a
  replay costs about two thirds of the forward it repeats. The masks are drawn exactly as
  PyTorch's CPU dropout and math attention draw them (``bernoulli_(1 - p)`` divided by
  ``1 - p``), so a recorded forward equals an ordinary one under the same seed.
* ``SeededDraws`` (GPU): the generator state is set back before each replay, so every kernel
  draws again what it drew. Fused SDPA kernels draw their attention-dropout masks inside the
  kernel, where they cannot be recorded, and on a GPU drawing is cheap.

Both are context managers used the same way: ``with draws.recording(): forward()`` once, then
``with draws.replaying(): forward_at_other_params()`` any number of times.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode


def _argument(args: tuple, kwargs: dict, index: int, name: str, default: Any) -> Any:
    return args[index] if len(args) > index else kwargs.get(name, default)


def _mask(like: torch.Tensor, p: float) -> torch.Tensor:
    """Dropout's scaled keep-mask, drawn as PyTorch's CPU dropout draws it."""
    return torch.empty_like(like).bernoulli_(1 - p).div_(1 - p)


# Random ops recorded as they are (their result replayed): anything a model might draw from
# besides dropout and SDPA (e.g. DeBERTa's StableDropout draws with Tensor.bernoulli_).
_IN_PLACE = {
    torch.Tensor.bernoulli_, torch.Tensor.uniform_, torch.Tensor.normal_, torch.Tensor.random_,
    torch.Tensor.exponential_, torch.Tensor.geometric_, torch.Tensor.log_normal_, torch.Tensor.cauchy_,
}
_OUT_OF_PLACE = {
    torch.bernoulli, torch.Tensor.bernoulli, torch.rand, torch.rand_like, torch.randn, torch.randn_like,
    torch.randint, torch.randint_like, torch.randperm, torch.normal, torch.multinomial, torch.Tensor.multinomial,
}


class UnreplayableForward(RuntimeError):
    """A replayed forward drew differently from the recorded one."""


class RecordedDraws(TorchFunctionMode):
    """Records the random tensors one forward draws, in order; replays hand them back in order."""

    def __init__(self) -> None:
        super().__init__()
        self._draws: list[torch.Tensor] = []
        self._next = 0
        self._replaying = False
        # Every torch call of the forward comes through __torch_function__: one dict lookup
        # sends the few random ones to their handler and the rest straight on.
        self._handlers: dict[Callable, Callable] = {
            F.dropout: self._functional_dropout,
            torch.dropout: self._aten_dropout,
            F.scaled_dot_product_attention: self._attention,
            **{func: self._in_place for func in _IN_PLACE},
            **{func: self._out_of_place for func in _OUT_OF_PLACE},
        }

    @contextmanager
    def recording(self) -> Iterator[None]:
        self._draws, self._replaying = [], False
        with self:
            yield

    @contextmanager
    def replaying(self) -> Iterator[None]:
        self._next, self._replaying = 0, True
        generator = torch.get_rng_state()
        with self:
            yield
        if self._next != len(self._draws):
            raise UnreplayableForward(
                f"a replayed forward drew {self._next} random tensors, the recorded one {len(self._draws)}")
        if not torch.equal(generator, torch.get_rng_state()):
            raise UnreplayableForward(
                "the model draws random numbers through an op metaxl-tune cannot record; "
                "use --hypergradient exact with this model")

    def __torch_function__(self, func: Callable, types, args: tuple = (), kwargs: dict | None = None):
        handler = self._handlers.get(func)
        if handler is None:
            return func(*args, **(kwargs or {}))
        return handler(func, args, kwargs or {})

    def _functional_dropout(self, func: Callable, args: tuple, kwargs: dict) -> torch.Tensor:
        return self._dropout(args[0], float(_argument(args, kwargs, 1, "p", 0.5)),
                             bool(_argument(args, kwargs, 2, "training", True)),
                             bool(_argument(args, kwargs, 3, "inplace", False)))

    def _aten_dropout(self, func: Callable, args: tuple, kwargs: dict) -> torch.Tensor:
        return self._dropout(args[0], float(_argument(args, kwargs, 1, "p", 0.5)),
                             bool(_argument(args, kwargs, 2, "train", True)), False)

    def _in_place(self, func: Callable, args: tuple, kwargs: dict) -> torch.Tensor:
        if self._replaying:
            with torch.no_grad():
                return args[0].copy_(self._take())
        result = func(*args, **kwargs)
        self._draws.append(result.detach().clone())
        return result

    def _out_of_place(self, func: Callable, args: tuple, kwargs: dict) -> torch.Tensor:
        if self._replaying:
            return self._take().clone()
        result = func(*args, **kwargs)
        self._draws.append(result.detach())
        return result

    def _take(self) -> torch.Tensor:
        if self._next >= len(self._draws):
            raise UnreplayableForward(f"a replayed forward drew more than the {len(self._draws)} random tensors recorded")
        draw = self._draws[self._next]
        self._next += 1
        return draw

    def _keep_mask(self, like: torch.Tensor, p: float) -> torch.Tensor:
        if self._replaying:
            mask = self._take()
            if mask.shape != like.shape:
                raise UnreplayableForward(f"a replayed dropout of shape {tuple(like.shape)} met a recorded mask "
                                          f"of shape {tuple(mask.shape)}")
            return mask
        mask = _mask(like, p)
        self._draws.append(mask)
        return mask

    def _dropout(self, x: torch.Tensor, p: float, training: bool, inplace: bool) -> torch.Tensor:
        if not training or p == 0:
            return x
        if p == 1:
            return x.mul_(0) if inplace else x * 0
        mask = self._keep_mask(x, p)
        return x.mul_(mask) if inplace else x * mask

    def _attention(self, func: Callable, args: tuple, kwargs: dict) -> torch.Tensor:
        """SDPA's math kernel, restated so that its attention-dropout mask can be recorded:
        softmax(q k^T * scale + mask), dropped out, times v (the order and the draws of
        PyTorch's ``_scaled_dot_product_attention_math``). Without dropout, SDPA itself."""
        dropout_p = float(_argument(args, kwargs, 4, "dropout_p", 0.0))
        if dropout_p == 0:
            return func(*args, **kwargs)
        query, key, value = args[0], args[1], args[2]
        attn_mask = _argument(args, kwargs, 3, "attn_mask", None)
        is_causal = bool(_argument(args, kwargs, 5, "is_causal", False))
        scale = kwargs.get("scale")
        if kwargs.get("enable_gqa") and key.shape[-3] != query.shape[-3]:
            repeat = query.shape[-3] // key.shape[-3]
            key, value = key.repeat_interleave(repeat, -3), value.repeat_interleave(repeat, -3)
        scale = 1 / math.sqrt(query.shape[-1]) if scale is None else scale
        scores = (query * scale) @ key.transpose(-2, -1)
        if is_causal:
            causal = torch.ones(query.shape[-2], key.shape[-2], dtype=torch.bool, device=query.device).tril()
            scores = scores.masked_fill(~causal, float("-inf"))
        if attn_mask is not None:
            scores = scores.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool else scores + attn_mask
        weights = scores.softmax(-1)
        return (weights * self._keep_mask(weights, dropout_p)) @ value


class SeededDraws:
    """Replays by setting the generators back to where the recorded forward began; after a
    replay the random stream goes on as if it had not happened."""

    def __init__(self) -> None:
        self._start: tuple[torch.Tensor, list[torch.Tensor] | None] | None = None

    @contextmanager
    def recording(self) -> Iterator[None]:
        self._start = _generator_state()
        yield

    @contextmanager
    def replaying(self) -> Iterator[None]:
        resume = _generator_state()
        _set_generator_state(self._start)
        try:
            yield
        finally:
            _set_generator_state(resume)


def _generator_state() -> tuple[torch.Tensor, list[torch.Tensor] | None]:
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    return torch.get_rng_state(), cuda


def _set_generator_state(state: tuple[torch.Tensor, list[torch.Tensor] | None]) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state_all(state[1])


def draws_for(device: torch.device) -> RecordedDraws | SeededDraws:
    """Recorded masks on a CPU, where drawing is expensive; seeded redraws elsewhere, where fused
    attention kernels draw inside and drawing is cheap."""
    return RecordedDraws() if device.type == "cpu" else SeededDraws()
