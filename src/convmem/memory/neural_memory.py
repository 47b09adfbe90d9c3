"""Titans neural memory: an MLP whose weights are written at test time, batched over rows.

The memory M is a small MLP (depth >= 2). Writing a chunk of keys k and values v takes one step of
the Titans update on the associative loss l(M) = mean_n ||M(k_n) - v_n||^2 (squared norm, mean over tokens):

    S_t = eta_t * S_{t-1} - theta_t * clip(grad l(M_{t-1}))      (momentum = past surprise)
    M_t = (1 - alpha_t) * M_{t-1} + S_t                           (alpha_t = forgetting)

with theta_t (step size, scaled by a max lr), eta_t and alpha_t given by sigmoid linear heads on the
mean of the written hidden states — data-dependent, as in Titans. Every row (conversation) has its
own weights and momentum, stacked [B, ...]; the update is `vmap(grad(loss))` over rows.

Why our own module and not titans-pytorch (README may quote this paragraph):
    The write is ~60 lines of torch.func (functional_call + grad + vmap) and is the method itself, so
    we own it and test it against a plain-autograd reference. titans-pytorch 0.5.x brings a heavy
    dependency set, has no MAL class, keeps no per-row weights across calls with batch_size=None, and
    is reported to NaN on long sequences without max_grad_norm; we need explicit per-conversation
    state in/out, fp32, per-row clipping and backprop through the writes for outer-loop training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad_and_value, vmap

from convmem.config import Count, Positive, Range

Params = dict[str, torch.Tensor]


@dataclass
class NeuralMemoryConfig:
    """Shape and update rule of the memory.

    Attributes:
        dim: key/value/query width d_mem of the memory MLP.
        expansion: hidden width of the MLP = expansion * dim.
        depth: number of linear layers (>= 2, Titans' deep memory).
        max_lr: theta_t = max_lr * sigmoid(.) — the largest inner step size.
        max_grad_norm: per-row clip of the inner gradient's global norm (None = no clip). Without it
            long dialogues can blow the memory up (a known titans-pytorch failure).
        init_lr, init_momentum, init_forget: theta, eta, alpha at initialisation (the heads start
            data-independent at these values and learn their data dependence in the outer loop).
    """

    dim: Count = 64
    expansion: Count = 2
    depth: Annotated[int, Range(2)] = 2  # a deep memory
    max_lr: Positive = 1.0
    max_grad_norm: Positive | None = 10.0
    init_lr: Positive = 0.1  # and < max_lr (validate)
    init_momentum: Annotated[float, Range(0, 1, lo_open=True, hi_open=True)] = 0.5
    init_forget: Annotated[float, Range(0, 1, lo_open=True, hi_open=True)] = 0.02

    def validate(self) -> None:
        """Raise ValueError naming the first bad field."""
        for name in ("dim", "expansion", "depth"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"memory.{name} must be an integer, got {value!r}")
        for name in ("max_lr", "max_grad_norm", "init_lr", "init_momentum", "init_forget"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and not isinstance(value, bool)) and not (
                name == "max_grad_norm" and value is None
            ):
                raise ValueError(f"memory.{name} must be a number, got {value!r}")
        if self.depth < 2:
            raise ValueError(f"memory.depth must be >= 2 (a deep memory), got {self.depth}")
        if self.dim < 1 or self.expansion < 1:
            raise ValueError(f"memory.dim and memory.expansion must be >= 1, got {self.dim}, {self.expansion}")
        if self.max_lr <= 0:
            raise ValueError(f"memory.max_lr must be > 0, got {self.max_lr}")
        if self.max_grad_norm is not None and self.max_grad_norm <= 0:
            raise ValueError(f"memory.max_grad_norm must be > 0 or null, got {self.max_grad_norm}")
        if not 0 < self.init_lr < self.max_lr:
            raise ValueError(f"memory.init_lr must be in (0, max_lr={self.max_lr}), got {self.init_lr}")
        for name in ("init_momentum", "init_forget"):
            value = getattr(self, name)
            if not 0 < value < 1:
                raise ValueError(f"memory.{name} must be in (0, 1), got {value}")


class MemoryMLP(nn.Module):
    """The memory's function: x[..., dim] -> [..., dim], GELU between bias-free linear layers.

    Its own parameters are the learned *initial* weights M_0; per-row weights are passed in through
    `functional_call`.
    """

    def __init__(self, dim: int, expansion: int, depth: int) -> None:
        super().__init__()
        widths = [dim] + [dim * expansion] * (depth - 1) + [dim]
        self.weights = nn.ParameterList(
            nn.Parameter(nn.init.xavier_uniform_(torch.empty(w_in, w_out))) for w_in, w_out in zip(widths, widths[1:])
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.weights) - 1
        for i, weight in enumerate(self.weights):
            x = x @ weight
            if i < last:
                x = F.gelu(x)
        return x


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def _rows(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Broadcast a per-row [B] tensor against a [B, ...] tensor."""
    return x.reshape(x.shape + (1,) * (like.dim() - 1))


class NeuralMemory(nn.Module):
    """Per-row MLP memory with the Titans write (momentum + forgetting), fp32.

    Args:
        cfg: shape and update rule.
        gate_dim: width of the hidden states whose chunk mean drives theta/eta/alpha.
    """

    def __init__(self, cfg: NeuralMemoryConfig, gate_dim: int) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.mlp = MemoryMLP(cfg.dim, cfg.expansion, cfg.depth)
        # One linear head per rate; zero weights so the rates start at the configured values and the
        # outer loop learns how they depend on the data.
        self.rate_heads = nn.Linear(gate_dim, 3)
        nn.init.zeros_(self.rate_heads.weight)
        with torch.no_grad():
            self.rate_heads.bias.copy_(
                torch.tensor(
                    [_logit(cfg.init_lr / cfg.max_lr), _logit(cfg.init_momentum), _logit(cfg.init_forget)]
                )
            )

    # ----------------------------------------------------------------- state
    def initial_params(self, batch_size: int) -> tuple[Params, Params]:
        """(weights, momentum) of `batch_size` fresh rows: M_0 expanded to [B, ...] and S_0 = 0.

        Differentiable w.r.t. M_0 when grad is enabled (outer-loop training learns M_0).
        """
        weights = {
            name: p.unsqueeze(0).expand(batch_size, *p.shape).clone() for name, p in self.mlp.named_parameters()
        }
        momentum = {name: torch.zeros_like(w) for name, w in weights.items()}
        return weights, momentum

    # ----------------------------------------------------------------- read
    def recall(self, weights: Params, queries: torch.Tensor) -> torch.Tensor:
        """M(q) per row. weights: {name: [B, ...]}, queries: float32[B, T, dim] -> float32[B, T, dim]."""
        return vmap(lambda p, q: functional_call(self.mlp, p, (q,)))(weights, queries)

    # ----------------------------------------------------------------- write
    def rates(self, summary: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """theta, eta, alpha: float32[B] each, from summary float32[B, gate_dim] (chunk-mean states)."""
        theta_raw, eta_raw, alpha_raw = self.rate_heads(summary).unbind(-1)
        return self.cfg.max_lr * torch.sigmoid(theta_raw), torch.sigmoid(eta_raw), torch.sigmoid(alpha_raw)

    def surprise(
        self, weights: Params, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor
    ) -> tuple[Params, torch.Tensor]:
        """Per-row gradient and value of the associative loss.

        Args:
            weights: {name: float32[B, ...]}
            keys, values: float32[B, T, dim]
            mask: float32[B, T], 1 where the token is written in this step.
        Returns: (grads {name: [B, ...]}, loss float32[B]); loss is 0 for a row with no tokens.
        """

        def loss_fn(p: Params, k: torch.Tensor, v: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
            err = (functional_call(self.mlp, p, (k,)) - v).pow(2).sum(-1)
            return (err * m).sum() / m.sum().clamp(min=1.0)

        return vmap(grad_and_value(loss_fn))(weights, keys, values, mask)

    def clip(self, grads: Params) -> Params:
        """Scale each row's gradient so its global norm is at most max_grad_norm."""
        if self.cfg.max_grad_norm is None:
            return grads
        sq = sum(g.pow(2).flatten(1).sum(-1) for g in grads.values())
        # +1e-12 inside the root: a row that wrote nothing has a zero gradient, and d sqrt(x)/dx at
        # 0 is inf, which turned the outer loop's gradients to NaN (inf * 0) for dialogues that ended
        # before others in the same batch
        scale = (self.cfg.max_grad_norm / ((sq + 1e-12).sqrt() + 1e-6)).clamp(max=1.0)
        return {name: g * _rows(scale, g) for name, g in grads.items()}

    def update(
        self,
        weights: Params,
        momentum: Params,
        keys: torch.Tensor,
        values: torch.Tensor,
        summary: torch.Tensor,
        mask: torch.Tensor,
    ) -> tuple[Params, Params, torch.Tensor]:
        """One Titans write step for every row that has tokens in `mask`.

        Args:
            weights, momentum: {name: float32[B, ...]}  M_{t-1}, S_{t-1}
            keys, values: float32[B, T, dim]
            summary: float32[B, gate_dim]  mean of the written hidden states (drives the rates)
            mask: bool or float[B, T]  tokens written in this step
        Returns: (M_t, S_t, loss float32[B]); rows with no masked token come back unchanged with
            loss NaN (so a padding chunk never applies forgetting or momentum).
        """
        maskf = mask.to(keys.dtype)
        has = maskf.sum(-1) > 0
        grads, loss = self.surprise(weights, keys, values, maskf)
        grads = self.clip(grads)
        theta, eta, alpha = self.rates(summary)
        new_weights, new_momentum = {}, {}
        for name, w in weights.items():
            s = _rows(eta, w) * momentum[name] - _rows(theta, w) * grads[name]
            m = (1.0 - _rows(alpha, w)) * w + s
            keep = _rows(has, w)
            new_momentum[name] = torch.where(keep, s, momentum[name])
            new_weights[name] = torch.where(keep, m, w)
        return new_weights, new_momentum, torch.where(has, loss, torch.full_like(loss, float("nan")))
