"""What a MAL pass does to the backbone, for the report: gate activation and the residual's norm
relative to the hidden state it is added to, by utterance position in the dialogue.

A `MALProbe` is attached to a `MALMemory` (`memory.probe = MALProbe()`) for an evaluation pass;
every read then adds its rows to running sums indexed by position (0 = the first utterance, read
against the fresh memory). Sums, not means, so the shards of a sharded evaluation add up
(`merge`). Diagnostics only: nothing here changes a prediction.
"""

from __future__ import annotations

import torch

# Positions past this one are pooled into the last slot (the sums stay small for any dialogue).
MAX_POSITION = 255
# Report buckets: first and last position of each (inclusive); None = open-ended.
POSITION_BUCKETS: tuple[tuple[int, int | None], ...] = ((0, 0), (1, 1), (2, 3), (4, 7), (8, 15), (16, 31), (32, None))


class MALProbe:
    """Running sums of gate mean and residual / hidden norm ratio per utterance position."""

    def __init__(self) -> None:
        self.n = [0] * (MAX_POSITION + 1)
        self.gate = [0.0] * (MAX_POSITION + 1)
        self.ratio = [0.0] * (MAX_POSITION + 1)

    def __call__(self, gate: torch.Tensor, residual: torch.Tensor, h: torch.Tensor, mask: torch.Tensor,
                 positions: torch.Tensor) -> None:
        """Add one read.

        Args:
            gate, residual, h: float32[B, T, D] gate g, residual g * W_o r, hidden state h at layer L.
            mask: bool[B, T] positions that received the residual (the utterance's audio tokens).
            positions: int64[B] position of each row's utterance in its dialogue (-1 = inactive row).
        """
        maskf = mask.float()
        count = maskf.sum(-1)
        gate_row = (gate.mean(-1) * maskf).sum(-1) / count.clamp(min=1.0)
        ratio = residual.norm(dim=-1) / h.norm(dim=-1).clamp(min=1e-12)
        ratio_row = (ratio * maskf).sum(-1) / count.clamp(min=1.0)
        for b in range(mask.shape[0]):
            pos = int(positions[b])
            if pos < 0 or count[b] == 0:
                continue
            pos = min(pos, MAX_POSITION)
            self.n[pos] += 1
            self.gate[pos] += float(gate_row[b])
            self.ratio[pos] += float(ratio_row[b])

    def sums(self) -> dict:
        """{"n", "gate", "ratio"}: lists indexed by position (JSON-ready)."""
        return {"n": list(self.n), "gate": list(self.gate), "ratio": list(self.ratio)}


def merge(a: dict | None, b: dict | None) -> dict | None:
    """Elementwise sum of two `MALProbe.sums()` (None is the empty one)."""
    if a is None or b is None:
        return a if b is None else b
    return {k: [x + y for x, y in zip(a[k], b[k])] for k in ("n", "gate", "ratio")}


def by_position(sums: dict) -> list[dict]:
    """Per position bucket: {"positions": "0" | "2-3" | "32+", "n": reads, "gate": mean gate,
    "residual_ratio": mean ||g * W_o r|| / ||h||}; empty buckets left out."""
    out = []
    for lo, hi in POSITION_BUCKETS:
        stop = MAX_POSITION + 1 if hi is None else hi + 1
        n = sum(sums["n"][lo:stop])
        if n == 0:
            continue
        label = f"{lo}+" if hi is None else (str(lo) if lo == hi else f"{lo}-{hi}")
        out.append({"positions": label, "n": n, "gate": sum(sums["gate"][lo:stop]) / n,
                    "residual_ratio": sum(sums["ratio"][lo:stop]) / n})
    return out
