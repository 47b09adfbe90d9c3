"""Prosodic statistics measure what they claim on signals with known F0, level and rhythm."""

import numpy as np
import pytest

from convmem.audio.prosody import FEATURES, utterance_prosody
from convmem.errors import AudioError

SR = 16000


def _syllables(f0_hz: float, n: int = 8, amp: float = 0.3, syl_s: float = 0.15, gap_s: float = 0.1,
               glide_st: float = 0.0) -> np.ndarray:
    """n harmonic 'syllables' (F0 gliding by glide_st semitones across the utterance) with gaps."""
    rng = np.random.default_rng(0)
    out = []
    for k in range(n):
        f = f0_hz * 2 ** (glide_st * (k / max(n - 1, 1) - 0.5) / 12)
        t = np.arange(int(syl_s * SR)) / SR
        env = np.sin(np.pi * t / syl_s) ** 2
        tone = sum(np.sin(2 * np.pi * h * f * t) / h for h in (1, 2, 3))
        out += [amp * env * tone, np.zeros(int(gap_s * SR))]
    wave = np.concatenate(out)
    return (wave + 1e-3 * rng.standard_normal(wave.size)).astype(np.float32)


def test_f0_in_semitones_and_range():
    s = utterance_prosody(_syllables(200.0), SR)
    assert s.f0_mean_st == pytest.approx(12 * np.log2(2.0), abs=0.3)  # 200 Hz = 12 st re 100 Hz
    assert s.f0_range_st < 0.5
    wide = utterance_prosody(_syllables(200.0, glide_st=6.0), SR)
    assert 3.0 < wide.f0_range_st < 7.0


def test_energy_follows_amplitude_in_db():
    a = utterance_prosody(_syllables(150.0, amp=0.1), SR)
    b = utterance_prosody(_syllables(150.0, amp=0.4), SR)
    assert b.energy_db - a.energy_db == pytest.approx(20 * np.log10(4), abs=0.5)


def test_rate_counts_syllables_per_second():
    slow = utterance_prosody(_syllables(150.0, syl_s=0.2, gap_s=0.15), SR)
    fast = utterance_prosody(_syllables(150.0, syl_s=0.12, gap_s=0.06), SR)
    assert fast.rate_syl_s > 1.4 * slow.rate_syl_s
    assert 2.0 < slow.rate_syl_s < 6.0


def test_array_order_and_unvoiced_and_too_short():
    s = utterance_prosody(_syllables(150.0), SR)
    assert s.as_array().tolist() == [getattr(s, f) for f in FEATURES]
    noise = (0.1 * np.random.default_rng(1).standard_normal(SR)).astype(np.float32)
    assert np.isnan(utterance_prosody(noise, SR).f0_mean_st)
    with pytest.raises(AudioError, match=">= 50 ms"):
        utterance_prosody(np.zeros(100, dtype=np.float32), SR)
