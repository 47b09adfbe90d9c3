"""Shared test helpers: tiny generated audio, never downloaded data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

def _shared_data() -> Path:
    """The project's shared real data: $CONVMEM_SHARED_DATA, else ../shared/data beside the checkout,
    else the workplace's /work/shared/data (a clone made elsewhere still finds it). Tests that need
    it skip with a reason when none exists."""
    import os

    candidates = [os.environ.get("CONVMEM_SHARED_DATA"),
                  Path(__file__).resolve().parents[2] / "shared" / "data", "/work/shared/data"]
    for c in candidates:
        if c and Path(c).is_dir():
            return Path(c)
    return Path(__file__).resolve().parents[2] / "shared" / "data"


SHARED_DATA = _shared_data()


def make_tone(seconds: float, sr: int = 16000, freq: float = 220.0, seed: int = 0) -> np.ndarray:
    """float32[seconds*sr]: a tone with a little seeded noise, so it is not trivially periodic."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * sr))) / sr
    return (0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.fixture
def tone_wav(tmp_path):
    """Factory: write a tone file and return its path."""

    def _make(name: str = "a.wav", seconds: float = 2.0, sr: int = 16000, channels: int = 1, **kw) -> Path:
        wave = make_tone(seconds, sr)
        if channels > 1:
            wave = np.stack([wave] * channels, axis=1)
        path = tmp_path / name
        sf.write(path, wave, sr, **kw)
        return path

    return _make


@pytest.fixture(autouse=True)
def one_thread():
    """One torch intra-op thread for every test: tests use tiny shapes, which gain nothing from
    threads and oversubscribe a shared 2-core machine (tiny ops measured ~30x slower with 2)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
