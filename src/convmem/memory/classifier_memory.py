"""The classifier baseline (paper Table 1) behind the Memory interface, so the same engine, windows
and metrics serve it: like `window` (memory/context.py), it has no test-time state — each
utterance is read from the in-context history truncated from the start to n_limit tokens — but the
reader is the trained EmotionClassifier (slm/classifier.py) instead of the SLM. Earlier emotion
tokens in its windows are its own predictions (the engine's default), never gold.

It reads code ids only, also beside an SLM that reads continuous frames (`slm.audio_input=frames`):
the windows' `frames` are ignored. It is the discrete-token baseline; note that its frozen embedding
copy then holds the SLM's audio rows that a frames model never trains (a fixed random code
embedding under the classifier's own LayerNorm and encoder).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from convmem.memory.base import WindowBatch
from convmem.slm.classifier import EmotionClassifier


@dataclass
class ClassifierMemory:
    """Read emotion logits with a trained classifier over `window`-style windows.

    Args:
        model: a trained EmotionClassifier (put in eval mode here: dropout would make reads random).
        emotion_ids: vocabulary ids of the emotion tokens in label order (checked against the model).
        n_limit: the window length in tokens; the engine truncates windows to it.
    """

    model: EmotionClassifier
    emotion_ids: tuple[int, ...]
    n_limit: int
    name: str = "classifier"
    history_tokens: int | None = None

    def __post_init__(self) -> None:
        self.emotion_ids = tuple(int(i) for i in self.emotion_ids)
        if len(self.emotion_ids) != self.model.config.n_labels:
            raise ValueError(f"ClassifierMemory: {len(self.emotion_ids)} emotion ids but the classifier "
                             f"has {self.model.config.n_labels} labels")
        if self.n_limit < 1:
            raise ValueError(f"ClassifierMemory: n_limit must be >= 1, got {self.n_limit}")
        self.model.eval()

    @property
    def max_window(self) -> int:
        return self.n_limit

    def init(self, batch_size: int) -> None:
        return None

    def reset(self, state, rows: Sequence[int], keys: Sequence[str] | None = None):
        return state

    def write(self, state, batch: WindowBatch):
        return state, torch.full((batch.batch_size,), float("nan"))

    @torch.no_grad()
    def read(self, state, batch: WindowBatch) -> torch.Tensor:
        """float32[B, n_labels] classifier logits of each row's window (left padding is masked)."""
        device = next(self.model.parameters()).device
        return self.model(batch.input_ids.to(device), batch.attention_mask.to(device))
