"""The one interface every test-time memory implements, so one engine drives them all.

A memory serves a batch of B conversation *rows*. Its state is explicit — passed in and returned
(titans-pytorch style: `state = mem.write(state, batch)`) — and every row is independent: a row can
be reset when its conversation ends and a new one starts (moshi style), and no row ever reads another
row's state. The engine knows nothing about audio or files: it hands the memory token windows.

Per utterance i of a conversation the engine calls, in this order (Algorithm 1 of the DPM paper):

    state = memory.write(state, window_i)      # memorise utterance i given the tokens before it
    logits = memory.read(state, window_i)      # emotion logits of utterance i

The engine marks the first utterance of a conversation with `WindowBatch.first`. What a memory does
with it is its own method: DPM does not write it (Algorithm 1: no write without a prefix); MAL does,
since its write needs no prefix, and its read of utterance i still sees only utterances < i.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Protocol, Sequence, runtime_checkable

import torch


@dataclass
class WindowBatch:
    """Token windows of B rows, left-padded to a common length T.

    Each row's window = (up to `history_tokens` tokens of its conversation before utterance i)
    + utterance i's audio ids + `<audio_end>`. Emotion tokens of earlier utterances inside the
    prefix are the model's own predictions (or absent) — never gold.

    Attributes:
        input_ids:      int64[B, T]   left-padded (pad positions hold any valid id)
        attention_mask: int64[B, T]   1 = real token, 0 = padding
        target_mask:    bool[B, T]    True where the token is one of utterance i's own tokens
                                      (audio ids and `<audio_end>`): the L_t targets of eq. 9
        end_pos:        int64[B]      index of utterance i's `<audio_end>` (always T-1 when left-padded)
        active:         bool[B]       rows that hold an utterance this step (others are skipped and
                                      their state must come back unchanged)
        first:          bool[B]       rows whose utterance is the first of its conversation
        frames:         float32[B, T, D] continuous frames aligned with input_ids (zeros where the
                                      id is not audio) for a model that reads frames
                                      (slm/audio_embedding.py), else None
        speakers:       per row, who spoke utterance i (None: unknown, one shared speaker; idle
                                      rows None), or None when the caller knows no speakers
        emotion_weight: float32[B, T] or None: per position, the weight of a target in a write
                                      that supervises emotion tokens of the prefix (memory/dpm
                                      `write_emotion`): 0 where the position is not such a target
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    target_mask: torch.Tensor
    end_pos: torch.Tensor
    active: torch.Tensor
    first: torch.Tensor
    frames: torch.Tensor | None = None
    speakers: tuple | None = None
    emotion_weight: torch.Tensor | None = None

    @property
    def batch_size(self) -> int:
        return int(self.input_ids.shape[0])

    def to(self, device) -> "WindowBatch":
        """The batch on `device` (tensors already there are not copied)."""
        return WindowBatch(*(t.to(device) if isinstance(t, torch.Tensor) else t
                             for t in (getattr(self, f.name) for f in fields(WindowBatch))))

    def position_ids(self) -> torch.Tensor:
        """int64[B, T]: positions counted from each row's first real token (0 on padding)."""
        return (self.attention_mask.cumsum(-1) - 1).clamp(min=0)


@runtime_checkable
class Memory(Protocol):
    """A test-time memory over B independent conversation rows.

    Attributes:
        name: e.g. "none", "window", "dpm", "mal".
        history_tokens: how many tokens before utterance i the engine puts in its window
            (0 = current utterance only; None = as many as fit in the model's n_limit).
    """

    name: str
    history_tokens: int | None
    # Optional attribute `max_window: int | None`: the engine truncates every window from the
    # start to this many tokens (a model that cannot take more); None/absent = the memory copes.

    def init(self, batch_size: int) -> Any:
        """Fresh state for `batch_size` rows (every row a fresh conversation)."""

    def reset(self, state: Any, rows: Sequence[int], keys: Sequence[str] | None = None) -> Any:
        """Return `state` with `rows` restored to fresh (a new conversation starts there).

        `keys` (one per row, e.g. the dialogue id) seed anything random in a fresh memory, so a
        conversation gets the same memory whichever row or batch it runs in.
        """

    def write(self, state: Any, batch: WindowBatch) -> tuple[Any, torch.Tensor]:
        """Memorise utterance i of every active, non-first row.

        Returns: (new state, write loss float32[B], NaN where no write happened).
        """

    def read(self, state: Any, batch: WindowBatch) -> torch.Tensor:
        """Emotion logits float32[B, n_emotions] of utterance i (rows not active: undefined)."""
