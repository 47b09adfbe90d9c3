"""Tokenizer test helpers: seeded speech-like audio made here, never downloaded."""

from __future__ import annotations

import numpy as np
import pytest
import torch


def speechlike(seconds: float, seed: int = 0, sr: int = 16000, gain: float = 0.3) -> np.ndarray:
    """float32[seconds*sr]: harmonic 'voice' with a gliding f0 and syllable-rate envelope, plus noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * sr))) / sr
    f0 = 120 + 60 * rng.random() + 30 * np.sin(2 * np.pi * (0.5 + rng.random()) * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    voice = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * (3 + 2 * rng.random()) * t) ** 2
    noise = 0.05 * rng.standard_normal(t.size)
    return (gain * (voice * envelope / 2 + noise)).astype(np.float32)


def voice(f0: float, seconds: float = 2.0, seed: int = 0) -> np.ndarray:
    """A steady harmonic voice at `f0` Hz with a little noise, float32 at 16 kHz."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    wave = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 10)) * 0.1
    return (wave + 0.002 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: faster on the shared 2-core box, and module fixtures (fitted
    tokenizers) see the same float reduction order as the tests that refit and compare."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
