"""A LoRA whose A and B are stacked over B conversation rows, injected into any HF causal LM.

For row b of a batch, every target linear layer computes

    y_b = W x_b + (alpha / r) * B_b (A_b x_b)          A_b: [r, in], B_b: [out, r]

with one torch.bmm per factor, so B conversations, each with its own adapter, run in a single
forward/backward. PEFT cannot do this: its adapters are per-model (one set of weights shared by
every sample in a batch), so it cannot train per-sample adapters.

Injection is by forward hooks on the target nn.Linear modules, not by replacing them: the model's
module tree and state_dict keys stay unchanged, and with no tensors attached the hook returns None
so the layer's output is the frozen layer's output bit for bit. Tensors are attached only inside
`BatchedLoRA.attached(...)`, so the model is usable without memory before, after and between calls.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
from torch import nn

from convmem.slm.audio_embedding import projector_of

ALL_LINEAR = "all-linear"


@dataclass(frozen=True)
class LoRATarget:
    """One target linear layer: its qualified name in the model and its shape."""

    name: str
    in_features: int
    out_features: int


class BatchedLoRALinear:
    """The per-row LoRA delta of one nn.Linear, applied by a forward hook.

    Holds references (not copies) to the currently attached row tensors A [b, r, in] and
    B [b, out, r] and to a token mask [b, T]; with nothing attached it changes nothing.
    """

    def __init__(self, target: LoRATarget, scaling: float):
        self.target = target
        self.scaling = scaling
        self.lora_A: torch.Tensor | None = None
        self.lora_B: torch.Tensor | None = None
        self.token_mask: torch.Tensor | None = None

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        """(alpha/r) * B_b (A_b x_b) for x [b, T, in] -> [b, T, out] (float32 math)."""
        if x.dim() != 3 or x.shape[0] != self.lora_A.shape[0]:
            raise RuntimeError(
                f"batched LoRA on {self.target.name}: input {tuple(x.shape)} does not match "
                f"{self.lora_A.shape[0]} attached rows (expected [rows, T, {self.target.in_features}])")
        x = x.to(self.lora_A.dtype)
        if self.token_mask is not None:
            # masked_fill, not multiply: a NaN/inf activation on a padding position must not reach
            # the adapter's gradient (0 * NaN = NaN), and padding gets no adapter contribution.
            # Positions are the mask's last x.shape[1]: HF `logits_to_keep` feeds the head a tail.
            x = x.masked_fill(~self.token_mask[:, -x.shape[1]:].unsqueeze(-1), 0.0)
        h = torch.bmm(x, self.lora_A.transpose(1, 2))          # [b, T, r]
        return torch.bmm(h, self.lora_B.transpose(1, 2)) * self.scaling  # [b, T, out]

    def __call__(self, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor | None:
        if self.lora_A is None:
            return None
        return output + self.delta(args[0]).to(output.dtype)


def find_lora_targets(model: nn.Module, target_modules: str | Sequence[str] = ALL_LINEAR,
                      include_lm_head: bool = False) -> list[LoRATarget]:
    """The nn.Linear layers of `model` that get a temporary LoRA, in module order.

    Args:
        target_modules: "all-linear" (every nn.Linear except the output head, the paper's choice)
            or a list of module short names such as ["q_proj", "v_proj"].
        include_lm_head: also adapt the output head (model.get_output_embeddings()).
    The audio projector of a frames model (slm/audio_embedding.py) is never a target: it is the
    front-end, not the LM, so DPM adapts the same layers whatever the model reads at audio positions.
    Linear layers inside a PEFT adapter (lora_A / lora_B) are never targets; for an unmerged PEFT
    model the `...q_proj.base_layer` linear is matched by its parent's short name "q_proj".
    """
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    projector = projector_of(model)
    front_end = set() if projector is None else {id(m) for m in projector.modules()}
    wanted = None if target_modules == ALL_LINEAR else set(target_modules)
    targets = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear) or id(module) in front_end:
            continue
        parts = name.split(".")
        if any(p.startswith("lora_") for p in parts):
            continue
        short = parts[-2] if parts[-1] == "base_layer" and len(parts) > 1 else parts[-1]
        if module is head:
            if not include_lm_head:
                continue
        elif wanted is not None and short not in wanted:
            continue
        targets.append(LoRATarget(name, module.in_features, module.out_features))
    if not targets:
        raise ValueError(f"no nn.Linear layer of {type(model).__name__} matches target_modules="
                         f"{target_modules!r}")
    return targets


class BatchedLoRA:
    """Per-row temporary LoRA hooked into a model's target linear layers.

    Args:
        model: any torch model (an HF causal LM); its own parameters are never modified.
        rank, alpha: LoRA rank r and alpha (delta scaled by alpha / r).
        target_modules, include_lm_head: see `find_lora_targets`.
    Call `remove()` (or use as a context manager) to take the hooks out again.
    """

    def __init__(self, model: nn.Module, rank: int, alpha: float,
                 target_modules: str | Sequence[str] = ALL_LINEAR, include_lm_head: bool = False):
        if rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {rank}")
        self.model, self.rank, self.alpha = model, rank, alpha
        self.scaling = alpha / rank
        self.targets = find_lora_targets(model, target_modules, include_lm_head)
        modules = dict(model.named_modules())
        self.layers: dict[str, BatchedLoRALinear] = {}
        self._handles = []
        for t in self.targets:
            layer = BatchedLoRALinear(t, self.scaling)
            self.layers[t.name] = layer
            self._handles.append(modules[t.name].register_forward_hook(layer))

    def __enter__(self) -> "BatchedLoRA":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    def remove(self) -> None:
        """Take every hook out of the model (idempotent)."""
        for h in self._handles:
            h.remove()
        self._handles = []

    def init_tensors(self, batch: int, device: torch.device | str = "cpu",
                     dtype: torch.dtype = torch.float32) -> tuple[dict, dict]:
        """Zero A [batch, r, in] and B [batch, out, r] per target (fill A from `fresh_a`)."""
        a = {t.name: torch.zeros(batch, self.rank, t.in_features, device=device, dtype=dtype)
             for t in self.targets}
        b = {t.name: torch.zeros(batch, t.out_features, self.rank, device=device, dtype=dtype)
             for t in self.targets}
        return a, b

    def fresh_a(self, seed: int) -> dict[str, torch.Tensor]:
        """A fresh A [r, in] per target, drawn from a CPU generator seeded with `seed`.

        PEFT's default init (kaiming_uniform with a=sqrt(5), i.e. U(-1/sqrt(in), 1/sqrt(in))),
        target by target in module order, so one seed gives the same A on any row, batch size or
        device. (B starts at zero, which makes a fresh adapter a no-op.)
        """
        gen = torch.Generator().manual_seed(int(seed))
        out = {}
        for t in self.targets:
            bound = 1.0 / math.sqrt(t.in_features)
            out[t.name] = torch.empty(self.rank, t.in_features).uniform_(-bound, bound, generator=gen)
        return out

    @contextlib.contextmanager
    def attached(self, lora_a: dict, lora_b: dict, token_mask: torch.Tensor | None = None
                 ) -> Iterator[None]:
        """Within the block the model runs with these row adapters; afterwards it is frozen again.

        Args:
            lora_a, lora_b: {target name: [b, r, in]} and {target name: [b, out, r]}; the model
                must then be called with exactly b rows.
            token_mask: bool[b, T] positions that get the adapter (None = all).
        """
        for name, layer in self.layers.items():
            layer.lora_A, layer.lora_B, layer.token_mask = lora_a[name], lora_b[name], token_mask
        try:
            yield
        finally:
            for layer in self.layers.values():
                layer.lora_A = layer.lora_B = layer.token_mask = None


__all__ = ["ALL_LINEAR", "LoRATarget", "BatchedLoRALinear", "BatchedLoRA", "find_lora_targets"]
