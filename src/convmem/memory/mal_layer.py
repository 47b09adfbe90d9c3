"""Memory-as-a-Layer: the neural memory read back as a gated residual at one layer of a frozen LM.

At decoder layer L the adapter sees h, the *input* hidden states of layer L (= HF's
`hidden_states[L]`), and replaces it, at utterance i's audio-token positions only, with

    h + g * W_o r,    r = M(W_q h),    g = sigmoid(W_g W_q h + b_g)

Keys and values for the writes come from the same layer-L input h (W_k h, W_v h). Because the
residual is added to the input of layer L, h itself never depends on the memory, so the write and
the read of an utterance see identical h. No token is inserted: positions and the attention mask are
the backbone's own. W_o starts at zero, so a fresh adapter is the identity; a *disabled* adapter is
not hooked at all (the backbone runs untouched). The backbone is driven through a forward pre-hook,
so any HF decoder whose layers take hidden states as their first argument works.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from convmem.memory.neural_memory import NeuralMemory, NeuralMemoryConfig, Params

# Attribute paths of the decoder-layer list in common HF causal LMs, tried before a generic search.
_LAYER_PATHS = ("model.layers", "model.model.layers", "transformer.h", "gpt_neox.layers", "model.decoder.layers")


def find_decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The ModuleList of decoder layers of an HF causal LM (Llama, Qwen, GPT-2, NeoX, OPT, ...).

    Raises ValueError when none is found.
    """
    for path in _LAYER_PATHS:
        obj: object = model
        for attr in path.split("."):
            obj = getattr(obj, attr, None)
            if obj is None:
                break
        if isinstance(obj, nn.ModuleList) and len(obj) > 0:
            return obj
    n_layers = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    for _, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and n_layers is not None and len(module) == n_layers:
            return module
    raise ValueError(f"cannot find the decoder layers of {type(model).__name__}")


@contextmanager
def layer_input_hook(layer: nn.Module, fn: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[None]:
    """While active, the layer's input hidden states h[B, T, D] are replaced by fn(h).

    The hook is removed on exit (also on error), so the backbone is untouched afterwards.
    """

    def pre_hook(_module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        if args:
            return (fn(args[0]),) + tuple(args[1:]), kwargs
        kwargs = dict(kwargs)
        kwargs["hidden_states"] = fn(kwargs["hidden_states"])
        return args, kwargs

    handle = layer.register_forward_pre_hook(pre_hook, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


class _StopForward(Exception):
    """Raised by the capture hook to end a forward pass at layer L (layers after L are not needed)."""

    def __init__(self, hidden: torch.Tensor) -> None:
        super().__init__("stop at layer")
        self.hidden = hidden


def capture_layer_input(layer: nn.Module, forward: Callable[[], object]) -> torch.Tensor:
    """Run `forward()` only up to `layer` and return that layer's input hidden states [B, T, D]."""

    def stop(h: torch.Tensor) -> torch.Tensor:
        raise _StopForward(h)

    with layer_input_hook(layer, stop):
        try:
            forward()
        except _StopForward as caught:
            return caught.hidden
    raise RuntimeError("the forward pass never reached the hooked layer")


def chunk_index(mask: torch.Tensor, chunk_size: int | None) -> tuple[torch.Tensor, int]:
    """Chunk number of every written token, counted per row in token order.

    Args:
        mask: bool[B, T] written tokens.
        chunk_size: tokens per chunk; None = the whole utterance is one chunk.
    Returns: (int64[B, T] chunk id, -1 where not written; number of chunks of the longest row).
    """
    rank = mask.long().cumsum(-1) - 1
    if chunk_size is None:
        ids = torch.zeros_like(rank)
    else:
        ids = torch.div(rank, chunk_size, rounding_mode="floor")
    ids = torch.where(mask, ids, torch.full_like(ids, -1))
    n_chunks = int(ids.max().item()) + 1 if bool(mask.any()) else 0
    return ids, n_chunks


class MALAdapter(nn.Module):
    """Projections, gate and neural memory of MAL (all trainable; the backbone is not in here).

    Args:
        d_model: hidden width of the backbone at layer L.
        memory: neural-memory config (d_mem = memory.dim).
    """

    def __init__(self, d_model: int, memory: NeuralMemoryConfig) -> None:
        super().__init__()
        d_mem = memory.dim
        # LayerNorm first: hidden-state scales differ wildly between backbones and layers.
        self.norm = nn.LayerNorm(d_model)
        self.to_key = nn.Linear(d_model, d_mem, bias=False)
        self.to_value = nn.Linear(d_model, d_mem, bias=False)
        self.to_query = nn.Linear(d_model, d_mem, bias=False)
        self.to_gate = nn.Linear(d_mem, d_model)
        self.to_out = nn.Linear(d_mem, d_model, bias=False)
        nn.init.zeros_(self.to_out.weight)  # fresh adapter = identity
        self.memory = NeuralMemory(memory, gate_dim=d_model)

    # --------------------------------------------------------------- pieces
    def residual(self, weights: Params, x: torch.Tensor) -> torch.Tensor:
        """g * W_o M(W_q x) for normed states x float32[B, T, D] -> float32[B, T, D]."""
        gate, out = self.gated(weights, x)
        return gate * out

    def gated(self, weights: Params, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(g, W_o M(W_q x)), each float32[B, T, D], for normed states x float32[B, T, D].

        Gradient flow from a fresh adapter: W_o = 0 makes d/dW_o = g * M(.) (non-zero: the gate
        starts near sigmoid(0) = 0.5, never closed) and every other factor's gradient zero; after
        the first optimizer step W_o is non-zero and the gradient reaches gate, query, memory and
        the write side. Both factors starting at zero (or a closed gate) would stall all of them.
        """
        u = self.to_query(x)
        read = self.memory.recall(weights, F.normalize(u, dim=-1))
        return torch.sigmoid(self.to_gate(u)), self.to_out(read)

    def _write_chunk(
        self, weights: Params, momentum: Params, x: torch.Tensor, chunk: torch.Tensor
    ) -> tuple[Params, Params, torch.Tensor]:
        chunkf = chunk.to(x.dtype)
        summary = (x * chunkf.unsqueeze(-1)).sum(1) / chunkf.sum(1, keepdim=True).clamp(min=1.0)
        keys = F.normalize(self.to_key(x), dim=-1)
        return self.memory.update(weights, momentum, keys, self.to_value(x), summary, chunk)

    def _normed(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # Zero unwritten positions first: padding rows may hold NaN from fully-masked attention,
        # and NaN * 0 would still poison the gradients.
        return self.norm(torch.where(mask.unsqueeze(-1), h.float(), torch.zeros((), device=h.device)))

    # --------------------------------------------------------------- write / read
    def write(
        self, weights: Params, momentum: Params, h: torch.Tensor, mask: torch.Tensor, chunk_size: int | None
    ) -> tuple[Params, Params, torch.Tensor]:
        """Write the masked tokens of h chunk by chunk (one update per chunk, in token order).

        Args:
            weights, momentum: {name: float32[B, ...]}
            h: [B, T, D] layer-L input hidden states; mask: bool[B, T] tokens to write.
        Returns: (weights, momentum, loss float32[B] token-weighted mean surprise, NaN if no token).
        """
        x = self._normed(h, mask)
        ids, n_chunks = chunk_index(mask, chunk_size)
        total = torch.zeros(h.shape[0], device=h.device)
        count = torch.zeros(h.shape[0], device=h.device)
        for c in range(n_chunks):
            chunk = ids == c
            weights, momentum, loss = self._write_chunk(weights, momentum, x, chunk)
            n = chunk.sum(-1).float()
            total = total + torch.nan_to_num(loss) * n
            count = count + n
        loss = torch.where(count > 0, total / count.clamp(min=1.0), torch.full_like(total, float("nan")))
        return weights, momentum, loss

    def read(
        self,
        weights: Params,
        momentum: Params,
        h: torch.Tensor,
        mask: torch.Tensor,
        chunk_size: int | None,
        within_utterance: bool,
        probe: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], None] | None = None,
    ) -> torch.Tensor:
        """h with the gated memory residual added at the masked positions: [B, T, D] -> same dtype.

        `probe(gate, residual, h, mask)`, when given, sees the gate and residual float32[B, T, D],
        h float32[B, T, D] and mask bool[B, T] of this read (detached; diagnostics only).

        `within_utterance` (needs chunk_size): chunk c of the utterance reads the memory after the
        utterance's chunks < c were written (Titans' causal chunking); otherwise every token reads
        `weights` as given.
        """
        x = self._normed(h, mask)
        if within_utterance and chunk_size is not None:
            ids, n_chunks = chunk_index(mask, chunk_size)
            res = torch.zeros_like(x)
            gate = torch.zeros_like(x)
            for c in range(n_chunks):
                chunk = ids == c
                g, out = self.gated(weights, x)
                res = torch.where(chunk.unsqueeze(-1), g * out, res)
                gate = torch.where(chunk.unsqueeze(-1), g, gate)
                if c + 1 < n_chunks:
                    weights, momentum, _ = self._write_chunk(weights, momentum, x, chunk)
        else:
            gate, out = self.gated(weights, x)
            res = gate * out
        if probe is not None:
            probe(gate.detach(), res.detach(), h.detach().float(), mask)
        return torch.where(mask.unsqueeze(-1), h + res.to(h.dtype), h)
