"""Baselines without test-time state: `none` (the current utterance only) and `window`
(history in context, truncated from the start to fit n_limit — the paper's "4k" row of Table 3 —
or the full history when the model's positions allow — its "32k" row).

Both read the frozen SLM at the current utterance's `<audio_end>`; `write` is a no-op.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from convmem.memory.base import WindowBatch
from convmem.slm.audio_embedding import model_inputs


def read_emotion_logits(model: torch.nn.Module, batch: WindowBatch, emotion_ids: Sequence[int]) -> torch.Tensor:
    """Emotion logits at each row's `<audio_end>` (the last position: rows are left-padded).

    Returns: float32[B, n_emotions] — the full-vocabulary logits restricted to the emotion tokens (eq. 5).
    """
    out = model(
        **model_inputs(model, batch.input_ids, batch.frames),
        attention_mask=batch.attention_mask,
        position_ids=batch.position_ids(),
        logits_to_keep=1,  # only <audio_end>'s logits are read: skip the [B, T, V] projection
        use_cache=False,
    )
    return out.logits[:, -1, list(emotion_ids)].float()


@dataclass
class ContextMemory:
    """`none` (history_tokens=0) or `window` (history_tokens=None: fill up to n_limit).

    `max_window` tells the engine to truncate windows from the start to this many tokens.
    """

    model: torch.nn.Module
    emotion_ids: tuple[int, ...]
    n_limit: int
    name: str = "window"
    history_tokens: int | None = None

    @property
    def max_window(self) -> int:
        return self.n_limit

    @classmethod
    def none(cls, model, emotion_ids, n_limit) -> "ContextMemory":
        return cls(model, tuple(emotion_ids), n_limit, name="none", history_tokens=0)

    @classmethod
    def window(cls, model, emotion_ids, n_limit) -> "ContextMemory":
        return cls(model, tuple(emotion_ids), n_limit, name="window", history_tokens=None)

    def init(self, batch_size: int) -> None:
        return None

    def reset(self, state, rows, keys=None):
        return state

    def write(self, state, batch: WindowBatch):
        return state, torch.full((batch.batch_size,), float("nan"))

    @torch.no_grad()
    def read(self, state, batch: WindowBatch) -> torch.Tensor:
        return read_emotion_logits(self.model, batch, self.emotion_ids)
