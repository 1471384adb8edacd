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

from metaxl_tune.config import RTNInit
from metaxl_tune.model.model_config import resolve_placements  # noqa: F401 - its home in the old release


class RTN(nn.Module):
    """Bottleneck feed-forward network; with ``gate`` an extra output unit gates the others.

    ``residual`` (default) returns ``h + g(h)``; without it the (gated) output ``g(h)`` replaces
    ``h``: the reference's Raptors returns ``sigmoid(gate) * g(h)`` and only ``step_metaxl`` adds
    ``h`` to it, ``step_jt_metaxl`` hands it to the layers above as it is.

    ``init`` fills both linear layers' weights (biases zero); None leaves PyTorch's default for
    the caller to fill (``RTNBank`` fills them in the reference's order)."""

    def __init__(
        self, hidden_size: int, bottleneck: int, *, gate: bool = False, detach_input: bool = False,
        residual: bool = True, init: RTNInit | None = "xavier-normal",
    ):
        super().__init__()
        self.gate = gate
        self.detach_input = detach_input
        self.residual = residual
        self.down = nn.Linear(hidden_size, bottleneck)
        self.up = nn.Linear(bottleneck, hidden_size + (1 if gate else 0))
        if init is not None:
            self.reset_parameters(init)

    def reset_parameters(self, init: RTNInit) -> None:
        """Reference ``Raptors.init_weights``: xavier_normal_ weights, zero biases (xavier-uniform
        is our earlier choice, kept as an option)."""
        fill = {"xavier-normal": nn.init.xavier_normal_, "xavier-uniform": nn.init.xavier_uniform_}[init]
        for layer in (self.down, self.up):
            fill(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, hidden: torch.Tensor, rtn_input: torch.Tensor | None = None) -> torch.Tensor:
        """``hidden + g(hidden)`` (``g(hidden)`` alone without the residual); with ``rtn_input`` the
        network reads that tensor instead of ``hidden`` while the residual keeps ``hidden`` (the
        finite difference's frozen input)."""
        # The reference implementation feeds the RTN a detached copy, so theta's gradient
        # reaches earlier layers only through the residual path, not through g_phi's Jacobian.
        source = hidden if rtn_input is None else rtn_input
        source = source.detach() if self.detach_input else source
        out = self.up(torch.relu(self.down(source)))
        if self.gate:
            out = torch.sigmoid(out[..., -1:]) * out[..., :-1]
        return hidden + out if self.residual else out


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
        init: RTNInit = "xavier-normal",
    ):
        super().__init__()
        if num_sources < 1:
            raise ValueError(f"num_sources: must be >= 1 (got {num_sources})")
        self.layers = list(layers)
        self.num_sources = num_sources
        self.rtns = nn.ModuleDict(
            {
                self._key(source, layer): RTN(
                    hidden_size, bottleneck, gate=gate, detach_input=detach_input, residual=residual, init=None
                )
                for source in range(num_sources)
                for layer in self.layers
            }
        )
        # Filled after every RTN is built, as Raptors does (constructor, then init_weights), so a
        # seed gives the reference's initial RTNs.
        for rtn in self.rtns.values():
            rtn.reset_parameters(init)
        self.mix_logits = nn.Parameter(torch.zeros(num_sources, len(self.layers)))
        self._active: int | None = None
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        # RTN inputs of one forward, for the finite difference (see ``inputs_recorded``).
        self._inputs: dict[tuple[int, int], torch.Tensor] = {}
        self._inputs_mode: str | None = None

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

    def transform(self, layer: int, source_index: int, hidden: torch.Tensor) -> torch.Tensor:
        """``hidden + g(hidden)`` with the RTN of ``layer`` for source language ``source_index``:
        every RTN application (hooks and mixture tails) goes through here."""
        rtn = self.rtn(layer, source_index)
        key = (source_index, layer)
        if self._inputs_mode == "record":
            self._inputs[key] = hidden.detach()
        elif self._inputs_mode == "replay" and rtn.detach_input:
            return rtn(hidden, rtn_input=self._inputs[key])
        return rtn(hidden)

    @contextmanager
    def inputs_recorded(self) -> Iterator[None]:
        """Forwards inside this block record each RTN's input (detached)."""
        self._inputs = {}
        with self._inputs_as("record"):
            yield

    @contextmanager
    def inputs_replayed(self) -> Iterator[None]:
        """Forwards inside this block feed each detaching RTN the input recorded by
        ``inputs_recorded``, while the residual adds the forward's own hidden state. With a
        detached input, theta's gradient treats the RTN input as a constant; the finite
        difference (train/bilevel.py) must hold it at its recorded value to estimate that gradient's
        change. RTNs that do not detach read their own input, as their gradient does."""
        with self._inputs_as("replay"):
            yield

    @contextmanager
    def _inputs_as(self, mode: str) -> Iterator[None]:
        self._inputs_mode = mode
        try:
            yield
        finally:
            self._inputs_mode = None

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
            # transformers 5 layers return a tensor; older ones (and some models) a tuple.
            if isinstance(output, tuple):
                return (self.transform(layer, self._active, output[0]), *output[1:])
            return self.transform(layer, self._active, output)

        return hook
