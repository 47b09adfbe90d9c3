"""Per-row optimizers for stacked per-conversation parameters: AdamW (the paper's) and plain SGD.

Every parameter tensor here is a stack over B conversation rows, `p[b]` being row b's own weights.
Each row keeps its own moments and its own step count, a step can update any subset of rows while
leaving the others (moments and step count included) untouched, and a row can be reset on its own.

Why hand-written: torch.optim keeps one state (and one step count) per parameter *tensor*, so a
stacked [B, ...] tensor would share a single step counter and bias correction across all rows, and
PEFT adapters are per-model, not per-sample. Neither can give B conversations independent
optimizer state in one batched step — which is the whole point of the batched DPM memory.
The AdamW update reproduces torch.optim.AdamW (single-tensor path) exactly, row by row.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class RowOptState:
    """Optimizer state of B rows.

    Attributes:
        step:       int64[B] optimizer steps taken by each row since its reset.
        exp_avg:    first moments, one tensor per parameter, each shaped like it ([B, ...]).
        exp_avg_sq: second moments, same shapes (empty for SGD).
    """

    step: torch.Tensor
    exp_avg: list[torch.Tensor] = field(default_factory=list)
    exp_avg_sq: list[torch.Tensor] = field(default_factory=list)

    def reset_rows(self, rows: torch.Tensor) -> None:
        """Zero the moments and step count of `rows` (int64[n]) in place."""
        self.step[rows] = 0
        for t in (*self.exp_avg, *self.exp_avg_sq):
            t[rows] = 0


class RowAdamW:
    """AdamW with independent state per row of stacked parameters.

    Args:
        lr, betas, eps, weight_decay: as torch.optim.AdamW (decoupled weight decay).
    """

    def __init__(self, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        if lr <= 0 or eps <= 0 or weight_decay < 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"invalid AdamW hyper-parameters lr={lr} betas={betas} eps={eps} "
                             f"weight_decay={weight_decay}")
        self.lr, self.betas, self.eps, self.weight_decay = lr, tuple(betas), eps, weight_decay

    def init_state(self, params: list[torch.Tensor]) -> RowOptState:
        """Fresh state for stacked params (each [B, ...]): zero moments, step 0 for every row."""
        batch = params[0].shape[0]
        return RowOptState(
            step=torch.zeros(batch, dtype=torch.int64, device=params[0].device),
            exp_avg=[torch.zeros_like(p) for p in params],
            exp_avg_sq=[torch.zeros_like(p) for p in params],
        )

    @torch.no_grad()
    def step(self, params: list[torch.Tensor], grads: list[torch.Tensor], rows: torch.Tensor,
             state: RowOptState) -> None:
        """Update `rows` of every param in place; other rows and their state are not touched.

        Args:
            params: stacked parameters, each [B, ...].
            grads:  gradients of the selected rows only, each [n, ...] matching params[i][rows].
            rows:   int64[n] row indices, distinct and sorted (e.g. from `mask.nonzero()`).
            state:  this optimizer's state for the same params (updated in place).
        """
        beta1, beta2 = self.betas
        state.step[rows] += 1
        step = state.step[rows].to(torch.float64)
        # Per-row bias corrections, computed in float64 like torch's python-float scalars.
        bc1 = 1 - beta1 ** step
        bc2_sqrt = torch.sqrt(1 - beta2 ** step)
        for p, g, m, v in zip(params, grads, state.exp_avg, state.exp_avg_sq):
            shape = (-1,) + (1,) * (p.dim() - 1)
            every = rows.numel() == p.shape[0]   # distinct sorted rows covering all: in place
            p_r, m_r, v_r = (p, m, v) if every else (p[rows], m[rows], v[rows])
            g = g.to(p.dtype)
            if self.weight_decay:
                p_r.mul_(1 - self.lr * self.weight_decay)
            m_r.lerp_(g, 1 - beta1)
            v_r.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            step_size = (self.lr / bc1).to(p.dtype).view(shape)
            denom = (v_r.sqrt() / bc2_sqrt.to(p.dtype).view(shape)).add_(self.eps)
            p_r.sub_(step_size * m_r / denom)
            if not every:
                p[rows], m[rows], v[rows] = p_r, m_r, v_r


class RowSGD:
    """Plain per-row SGD with optional momentum (no per-row bias correction needed)."""

    def __init__(self, lr: float, momentum: float = 0.0, weight_decay: float = 0.0):
        if lr <= 0 or not 0 <= momentum < 1 or weight_decay < 0:
            raise ValueError(f"invalid SGD hyper-parameters lr={lr} momentum={momentum} "
                             f"weight_decay={weight_decay}")
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay

    def init_state(self, params: list[torch.Tensor]) -> RowOptState:
        batch = params[0].shape[0]
        return RowOptState(step=torch.zeros(batch, dtype=torch.int64, device=params[0].device),
                           exp_avg=[torch.zeros_like(p) for p in params] if self.momentum else [])

    @torch.no_grad()
    def step(self, params: list[torch.Tensor], grads: list[torch.Tensor], rows: torch.Tensor,
             state: RowOptState) -> None:
        """Same contract as RowAdamW.step; momentum buffers start at the first gradient (torch)."""
        first = (state.step[rows] == 0)
        state.step[rows] += 1
        for i, (p, g) in enumerate(zip(params, grads)):
            p_r = p[rows]
            g = g.to(p.dtype)
            if self.weight_decay:
                g = g + self.weight_decay * p_r
            if self.momentum:
                buf = state.exp_avg[i][rows]
                shape = (-1,) + (1,) * (p.dim() - 1)
                buf = torch.where(first.view(shape), g, buf * self.momentum + g)
                state.exp_avg[i][rows] = buf
                g = buf
            p[rows] = p_r - self.lr * g


def make_row_optimizer(name: str, lr: float, weight_decay: float = 0.0,
                       betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                       momentum: float = 0.0) -> RowAdamW | RowSGD:
    """Build a per-row optimizer by name: "adamw" (default, the paper's) or "sgd"."""
    if name == "adamw":
        return RowAdamW(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    if name == "sgd":
        return RowSGD(lr=lr, momentum=momentum, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}: expected 'adamw' or 'sgd'")


__all__ = ["RowOptState", "RowAdamW", "RowSGD", "make_row_optimizer"]
