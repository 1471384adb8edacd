"""The representation transformation network g_phi (paper section 2.2) and where it sits.

    g_phi(h) = W2^T ReLU(W1^T h + b1) + b2        W1: d x r, W2: r x d
    h <- h + g_phi(h)                             (residual; source batches only)

The RTNs live outside the encoder's parameter list, so theta and phi have separate optimizers
and the bi-level step can differentiate through theta' = theta - alpha * grad without touching
phi. Forward hooks on the embedding module (placement 0) and on encoder layers (placement k)
add the residual only while ``RTNBank.applied()`` is active: target batches pass untouched.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
from torch import nn

from metaxl_tune.config import Placement


class RTN(nn.Module):
    """Bottleneck feed-forward network; with ``gate`` an extra output unit gates the others."""

    def __init__(self, hidden_size: int, bottleneck: int, *, gate: bool = False, detach_input: bool = False):
        super().__init__()
        self.gate = gate
        self.detach_input = detach_input
        self.down = nn.Linear(hidden_size, bottleneck)
        self.up = nn.Linear(bottleneck, hidden_size + (1 if gate else 0))
        for layer in (self.down, self.up):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        # The reference implementation feeds the RTN a detached copy, so theta's gradient
        # reaches earlier layers only through the residual path, not through g_phi's Jacobian.
        source = hidden.detach() if self.detach_input else hidden
        out = self.up(torch.relu(self.down(source)))
        if self.gate:
            out = torch.sigmoid(out[..., -1:]) * out[..., :-1]
        return hidden + out


def resolve_placements(placements: Sequence[Placement], depth: int, model_name: str) -> list[int]:
    """Map config placements (ints, 'middle', 'last') to layer indices 0..depth, validated."""
    resolved = []
    for placement in placements:
        index = {"last": depth, "middle": depth // 2}.get(placement, placement)
        if not isinstance(index, int) or not 0 <= index <= depth:
            raise ValueError(
                f"rtn_layers: layer {placement} is past the depth of model {model_name} "
                f"({depth} layers); use 0..{depth}, middle or last"
            )
        resolved.append(index)
    if len(set(resolved)) != len(resolved):
        raise ValueError(f"rtn_layers: {list(placements)} name the same layer twice for a {depth}-layer model")
    return sorted(resolved)


class RTNBank(nn.Module):
    """One RTN per placement, hooked into an encoder; inactive unless inside ``applied()``."""

    def __init__(
        self,
        layers: Sequence[int],
        hidden_size: int,
        bottleneck: int,
        *,
        gate: bool,
        detach_input: bool,
        num_sources: int = 1,
    ):
        super().__init__()
        self.layers = list(layers)
        # --- multi-source (sources branch, minimal; the bilevel branch has the fuller version) ---
        # One RTN set per source language (reference: Raptors(..., len(src_langs) if meta_per_lang
        # else 1)); with one source the keys stay "<layer>" so single-source state dicts are unchanged.
        self.num_sources = num_sources
        self.rtns = nn.ModuleDict(
            {
                self._key(source, layer): RTN(hidden_size, bottleneck, gate=gate, detach_input=detach_input)
                for source in range(num_sources)
                for layer in self.layers
            }
        )
        self._source = 0
        # --- end multi-source ---
        self._active = False
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def attach(self, embeddings: nn.Module, encoder_layers: Sequence[nn.Module]) -> None:
        """Hook each RTN after its module: placement 0 = embeddings, k = encoder layer k."""
        for layer in self.layers:
            module = embeddings if layer == 0 else encoder_layers[layer - 1]
            self._handles.append(module.register_forward_hook(self._hook(layer)))

    def detach_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _key(self, source: int, layer: int) -> str:
        return str(layer) if self.num_sources == 1 else f"s{source}_{layer}"

    @contextmanager
    def applied(self, source_index: int = 0) -> Iterator[None]:
        """Forwards inside this block are source forwards: each RTN (of source language
        ``source_index``'s set) transforms its layer's output."""
        if not 0 <= source_index < self.num_sources:
            raise ValueError(f"source_index {source_index} out of range for {self.num_sources} RTN sets")
        self._active, self._source = True, source_index
        try:
            yield
        finally:
            self._active, self._source = False, 0

    def _hook(self, layer: int):
        def hook(_module: nn.Module, _inputs, output):
            if not self._active:
                return None
            rtn = self.rtns[self._key(self._source, layer)]
            # transformers 5 layers return a tensor; older ones (and some models) a tuple.
            if isinstance(output, tuple):
                return (rtn(output[0]), *output[1:])
            return rtn(output)

        return hook
