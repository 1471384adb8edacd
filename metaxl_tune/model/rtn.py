"""The representation transformation network g_phi (paper section 2.2) and where it sits.

    g_phi(h) = W2^T ReLU(W1^T h + b1) + b2        W1: d x r, W2: r x d
    h <- h + g_phi(h)                             (residual; source batches only)
    h <- g_phi(h)                                 (``residual=False``: JT w/ RTN as the reference's
                                                   ``mlt.py: step_jt_metaxl`` runs it)

The RTNs live outside the encoder's parameter list, so theta and phi have separate optimizers
and the bi-level step can differentiate through theta' = theta - alpha * grad without touching
phi. Forward hooks on the embedding module (placement 0) and on encoder layers (placement k)
transform the output only while ``RTNBank.applied()`` is active: target batches pass untouched.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
from torch import nn

from metaxl_tune.config import Placement


class RTN(nn.Module):
    """Bottleneck feed-forward network; with ``gate`` an extra output unit gates the others.

    ``residual`` (default) returns ``h + g(h)``; without it the (gated) output ``g(h)`` replaces
    ``h``: the reference's Raptors returns ``sigmoid(gate) * g(h)`` and only ``step_metaxl`` adds
    ``h`` to it, ``step_jt_metaxl`` hands it to the layers above as it is.
    """

    def __init__(
        self, hidden_size: int, bottleneck: int, *, gate: bool = False, detach_input: bool = False,
        residual: bool = True,
    ):
        super().__init__()
        self.gate = gate
        self.detach_input = detach_input
        self.residual = residual
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
        return hidden + out if self.residual else out


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
    """The RTNs of every placement (one set per source language) and the mixture logits.

    ``rtns`` is keyed by placement (``"12"``), or by ``"<source index>_<placement>"`` when there
    are several source languages (the reference's ``meta_per_lang``: Raptors indexes its nets
    by language and layer). ``mix_logits[s]`` holds source language s's logits over the
    placements; ``softmax(mix_logits[s])`` weighs the per-placement losses in the mixture
    combination (reference ``Raptors.alpha``, zero-initialised, stepped by the meta optimizer).
    The hooks (``attach``/``applied``) serve the ``stack`` combination: inside ``applied`` every
    placement's RTN transforms its layer's output in the one forward pass. ``residual`` is every
    RTN's (``RTN``): False for JT w/ RTN as the reference runs it.
    """

    def __init__(
        self,
        layers: Sequence[int],
        hidden_size: int,
        bottleneck: int,
        *,
        gate: bool,
        detach_input: bool,
        num_sources: int = 1,
        residual: bool = True,
    ):
        super().__init__()
        if num_sources < 1:
            raise ValueError(f"num_sources: must be >= 1 (got {num_sources})")
        self.layers = list(layers)
        self.num_sources = num_sources
        self.rtns = nn.ModuleDict(
            {
                self._key(source, layer): RTN(
                    hidden_size, bottleneck, gate=gate, detach_input=detach_input, residual=residual
                )
                for source in range(num_sources)
                for layer in self.layers
            }
        )
        self.mix_logits = nn.Parameter(torch.zeros(num_sources, len(self.layers)))
        self._active: int | None = None
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def _key(self, source: int, layer: int) -> str:
        return str(layer) if self.num_sources == 1 else f"{source}_{layer}"

    def rtn(self, layer: int, source_index: int = 0) -> RTN:
        """The RTN of ``layer`` for source language ``source_index``."""
        if not 0 <= source_index < self.num_sources:
            raise IndexError(f"source_index {source_index} outside 0..{self.num_sources - 1}")
        return self.rtns[self._key(source_index, layer)]

    def mixture_weights(self, source_index: int = 0) -> torch.Tensor:
        """softmax of source language ``source_index``'s logits: one weight per placement."""
        return torch.softmax(self.mix_logits[source_index], dim=-1)

    def mixture_report(self, source_names: Sequence[str] | None = None) -> dict[str, float]:
        """The current weights as plain floats: ``rtn_mix_<placement>`` (one source language) or
        ``rtn_mix_<source>_<placement>`` (several; named by ``source_names`` or by index)."""
        report = {}
        with torch.no_grad():
            for source in range(self.num_sources):
                weights = self.mixture_weights(source).tolist()
                prefix = "rtn_mix_" if self.num_sources == 1 else (
                    f"rtn_mix_{source_names[source] if source_names else source}_"
                )
                report.update({f"{prefix}{layer}": float(weight) for layer, weight in zip(self.layers, weights)})
        return report

    def attach(self, embeddings: nn.Module, encoder_layers: Sequence[nn.Module]) -> None:
        """Hook each RTN after its module: placement 0 = embeddings, k = encoder layer k."""
        for layer in self.layers:
            module = embeddings if layer == 0 else encoder_layers[layer - 1]
            self._handles.append(module.register_forward_hook(self._hook(layer)))

    def detach_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    @contextmanager
    def applied(self, source_index: int = 0) -> Iterator[None]:
        """Forwards inside this block are source forwards: each RTN of source language
        ``source_index`` transforms its layer's output (the stack combination)."""
        self.rtn(self.layers[0], source_index)  # validates the index
        self._active = source_index
        try:
            yield
        finally:
            self._active = None

    def _hook(self, layer: int):
        def hook(_module: nn.Module, _inputs, output):
            if self._active is None:
                return None
            rtn = self.rtn(layer, self._active)
            # transformers 5 layers return a tensor; older ones (and some models) a tuple.
            if isinstance(output, tuple):
                return (rtn(output[0]), *output[1:])
            return rtn(output)

        return hook
