"""Attention kernels: fused SDPA wherever only first-order gradients are taken, the math kernel
inside the passes that the MetaXL step differentiates twice.

PyTorch's fused SDPA kernels (flash / memory-efficient on GPU, the flash kernel on CPU) have no
double backward (DESIGN.md section 3). Only one forward of MetaXL's step is differentiated
twice: the training loss L_train(theta, phi), whose theta-gradient is taken with
create_graph=True and then differentiated again with respect to phi (paper Algorithm 1,
lines 5-6). That forward runs under ``second_order_attention()``; the look-ahead forward
L_meta(theta') is differentiated once, and evaluation, target-only, JT and JT w/ RTN take
first-order gradients only, so they all keep the fused kernels.
"""

from __future__ import annotations

from typing import Any, ContextManager

from torch.nn.attention import SDPBackend, sdpa_kernel


def second_order_attention() -> ContextManager[Any]:
    """SDPA restricted to the math kernel (plain differentiable ops, so double backward works).
    A model built with eager attention never calls SDPA, so this is a no-op for it."""
    return sdpa_kernel(SDPBackend.MATH)

