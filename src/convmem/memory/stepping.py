"""When DPM writes and what it writes: the stepping strategies (the paper's open question).

- `sentence` (the paper, Algorithm 1): every utterance i >= 2 is written, its targets being its own
  tokens (audio ids and `<audio_end>`) predicted from the n_r tokens before it.
- `stride:N`: utterances accumulate as *pending* tokens; once at least N are pending the whole
  pending span (possibly several utterances) is written in one go, preceded by the n_r tokens before
  it (chunked like any long write). The paper suggests N = 1024. To see the whole span the engine
  must put n_r + N tokens of history in the window (`history_tokens`): pending tokens before
  utterance i are < N by construction. Emotion tokens inside the span are never targets (they are
  the model's own earlier predictions). Tokens still pending when the conversation ends are never
  written (the memory does not know which utterance is last); any pending token that is no longer
  inside the window is counted in `DPMState.truncated_tokens`, never silently dropped. The first
  utterance's tokens are not pending (Algorithm 1: no write without a prefix).
- `surprise`: like `sentence`, but utterance i is written only when its prediction loss under the
  current memory (the forward a write needs anyway) exceeds mean + k * std of the losses seen so
  far in this conversation (Welford running statistics, written or not). The first `warmup`
  eligible utterances are always written, so the statistics exist; k and warmup come from
  DPMConfig (defaults are a priori: k = 0, warmup = 2; not tuned on any corpus).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from convmem.memory.base import WindowBatch


@dataclass
class SteppingState:
    """Per-row bookkeeping of the stepping strategy.

    Attributes:
        pending_tokens: int64[B]   stride: target tokens seen since the last write.
        loss_count:     int64[B]   surprise: losses observed in this conversation.
        loss_mean:      float64[B] surprise: their running mean.
        loss_m2:        float64[B] surprise: running sum of squared deviations (Welford).
    """

    pending_tokens: torch.Tensor
    loss_count: torch.Tensor
    loss_mean: torch.Tensor
    loss_m2: torch.Tensor

    @classmethod
    def fresh(cls, batch: int, device: torch.device | str = "cpu") -> "SteppingState":
        z = dict(device=device)
        return cls(torch.zeros(batch, dtype=torch.int64, **z), torch.zeros(batch, dtype=torch.int64, **z),
                   torch.zeros(batch, dtype=torch.float64, **z), torch.zeros(batch, dtype=torch.float64, **z))

    def reset_rows(self, rows: torch.Tensor) -> None:
        for t in (self.pending_tokens, self.loss_count, self.loss_mean, self.loss_m2):
            t[rows] = 0


@dataclass
class WritePlan:
    """What one write call tries to write.

    Attributes:
        rows:      bool[B]    rows that get a loss forward this call.
        targets:   bool[B, T] their target positions in the window.
        truncated: int64[B]   pending tokens no longer in the window (stride only).
    """

    rows: torch.Tensor
    targets: torch.Tensor
    truncated: torch.Tensor


class SentenceStepping:
    """The paper's strategy: write every utterance i >= 2 with its own tokens as targets."""

    name = "sentence"

    def history_tokens(self, n_r: int) -> int:
        return n_r

    def plan(self, state: SteppingState, batch: WindowBatch, eligible: torch.Tensor,
             emotion_ids: torch.Tensor) -> WritePlan:
        targets = batch.target_mask.bool() & eligible[:, None]
        return WritePlan(eligible.clone(), targets, torch.zeros_like(state.pending_tokens))

    def accept(self, state: SteppingState, loss: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """bool[B]: which of `rows` (given their pre-update loss float[B]) really step."""
        return rows.clone()

    def commit(self, state: SteppingState, written: torch.Tensor) -> None:
        """Bookkeeping once `written` (bool[B]) rows have been written."""


class StrideStepping(SentenceStepping):
    """Write once every >= N pending target tokens, the whole pending span at once."""

    def __init__(self, stride: int):
        if stride < 1:
            raise ValueError(f"stride must be >= 1 token, got {stride}")
        self.stride = stride
        self.name = f"stride:{stride}"

    def history_tokens(self, n_r: int) -> int:
        return n_r + self.stride

    def plan(self, state: SteppingState, batch: WindowBatch, eligible: torch.Tensor,
             emotion_ids: torch.Tensor) -> WritePlan:
        new = (batch.target_mask.bool() & eligible[:, None]).sum(-1)
        state.pending_tokens += new
        rows = eligible & (state.pending_tokens >= self.stride)
        # Candidates: real, non-emotion tokens; the targets are the last `pending` of them.
        cand = batch.attention_mask.bool() & ~torch.isin(batch.input_ids, emotion_ids)
        from_end = cand.flip(-1).cumsum(-1).flip(-1)        # candidates at or after each position
        targets = cand & (from_end <= state.pending_tokens[:, None]) & rows[:, None]
        truncated = torch.where(rows, (state.pending_tokens - cand.sum(-1)).clamp(min=0), 0)
        return WritePlan(rows, targets, truncated)

    def commit(self, state: SteppingState, written: torch.Tensor) -> None:
        state.pending_tokens[written] = 0


class SurpriseStepping(SentenceStepping):
    """Write utterance i only if its loss exceeds this conversation's running mean + k * std."""

    def __init__(self, k: float = 0.0, warmup: int = 2):
        if warmup < 2:
            raise ValueError(f"surprise warmup must be >= 2 (a std needs two losses), got {warmup}")
        self.k, self.warmup = k, warmup
        self.name = "surprise"

    def accept(self, state: SteppingState, loss: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        loss = loss.to(torch.float64)
        n = state.loss_count
        std = torch.sqrt(state.loss_m2 / (n - 1).clamp(min=1))
        surprising = loss > state.loss_mean + self.k * std
        accepted = rows & ((n < self.warmup) | surprising) & torch.isfinite(loss)
        # Welford update with the observed loss, whether written or not.
        seen = rows & torch.isfinite(loss)
        n_new = n + seen.long()
        delta = torch.where(seen, loss - state.loss_mean, 0.0)
        state.loss_mean += torch.where(seen, delta / n_new.clamp(min=1), 0.0)
        state.loss_m2 += torch.where(seen, delta * (loss - state.loss_mean), 0.0)
        state.loss_count.copy_(n_new)
        return accepted


def make_stepping(spec: str, surprise_k: float = 0.0, surprise_warmup: int = 2) -> SentenceStepping:
    """Parse a stepping spec: "sentence", "stride:N" (N tokens) or "surprise"."""
    if spec == "sentence":
        return SentenceStepping()
    if spec == "surprise":
        return SurpriseStepping(surprise_k, surprise_warmup)
    if spec.startswith("stride:"):
        try:
            n = int(spec.split(":", 1)[1])
        except ValueError:
            raise ValueError(f"stepping {spec!r}: expected stride:N with N an integer token count")
        return StrideStepping(n)
    raise ValueError(f"unknown stepping {spec!r}: expected 'sentence', 'stride:N' or 'surprise'")


__all__ = ["SteppingState", "WritePlan", "SentenceStepping", "StrideStepping", "SurpriseStepping",
           "make_stepping"]
