"""Mixed precision for every method's step: autocast forwards, fp16 loss scaling, TF32.

Master weights and both optimizers' states stay fp32: autocast only lowers the dtype that the
forward's matmuls run in (the reference's ``--amp`` does the same through apex/torch.amp).
With fp16 one ``GradScaler`` covers theta's and phi's optimizers: every loss that is
differentiated is multiplied by the same scale S, each optimizer's gradients are unscaled
before clipping or stepping, a step whose gradients hold inf/NaN is skipped, and the scale is
updated once per training step (the "multiple optimizers" recipe of torch.amp).

The MetaXL look-ahead needs one more thing: theta' = theta - alpha * grad_theta L_train must
use the *unscaled* gradient, so ``unscale`` divides the create_graph gradient by S (a plain
differentiable multiply, so grad_phi L_meta(theta') keeps the single factor S from the scaled
meta loss and the meta optimizer unscales it like any other gradient).
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any, ContextManager, Mapping, Sequence

import torch

DTYPES: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class PrecisionError(ValueError):
    """The requested precision cannot run on this device; the message names what to pass."""


def check_precision(name: str, device: torch.device) -> None:
    """Fail with one line, before any data or weights are loaded, if ``name`` cannot run here."""
    dtype = DTYPES[name]
    if dtype is None:
        return
    if not torch.amp.autocast_mode.is_autocast_available(device.type):
        raise PrecisionError(f"precision: {name} autocast is not available on {device.type}; use --precision fp32")
    if device.type == "cuda" and dtype is torch.bfloat16 and not torch.cuda.is_bf16_supported():
        raise PrecisionError("precision: this GPU has no bf16 support (needs Ampere or newer); use --precision fp16")
    if device.type == "cpu":
        try:
            with torch.autocast("cpu", dtype=dtype):
                torch.ones(2, 2) @ torch.ones(2, 2)
        except RuntimeError:
            raise PrecisionError(
                f"precision: torch {torch.__version__} has no {name} autocast on cpu; use --precision bf16 or fp32"
            ) from None


def allow_tf32(device: torch.device) -> None:
    """TF32 for the fp32 matmuls left outside autocast (Ampere+). Only for bf16/fp16 runs: an fp32
    run stays bitwise IEEE fp32, the fidelity default."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


class Precision:
    """Autocast context, loss scaling and the optimizer steps that honour it, for one Learner."""

    def __init__(self, name: str, device: torch.device):
        check_precision(name, device)
        self.name = name
        self.device_type = device.type
        self.dtype = DTYPES[name]
        # enabled=False makes every scaler call a pass-through (scale 1, plain optimizer.step()).
        self.scaler = torch.amp.GradScaler(device.type, enabled=name == "fp16")
        if self.dtype is not None:
            allow_tf32(device)

    @property
    def scaling(self) -> bool:
        return self.scaler.is_enabled()

    def autocast(self) -> ContextManager[Any]:
        """Wrap forwards only (torch.amp: backward runs in the dtypes the forward chose)."""
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        """S * loss (fp16) or loss itself; every differentiated loss goes through here."""
        return self.scaler.scale(loss)

    def unscale(self, grads: Sequence[torch.Tensor | None]) -> list[torch.Tensor | None]:
        """Gradients of a scaled loss divided by S, differentiably (the look-ahead's theta')."""
        if not self.scaling:
            return list(grads)
        inverse = 1.0 / self.scaler.get_scale()
        return [None if grad is None else grad * inverse for grad in grads]

    def unscale_(self, optimizer: torch.optim.Optimizer) -> None:
        """Unscale ``optimizer``'s gradients in place (before clipping) and record inf/NaN."""
        self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """optimizer.step(), skipped when its (unscaled) gradients hold inf/NaN."""
        self.scaler.step(optimizer)

    def update(self) -> None:
        """Once per training step, after every optimizer stepped: grow or back off S."""
        self.scaler.update()

    def state_dict(self) -> dict[str, Any]:
        return self.scaler.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state:
            self.scaler.load_state_dict(dict(state))
