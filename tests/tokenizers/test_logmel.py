from __future__ import annotations

import numpy as np

from convmem.tokenizers.logmel import log_mel_25hz, mel_filters, mel_power, whisper_log_mel

from .conftest import speechlike


def test_mel_power_has_samples_over_160_frames():
    assert mel_power(np.zeros(16000, dtype=np.float32), 80).shape == (80, 100)
    assert mel_power(np.zeros(16100, dtype=np.float32), 128).shape == (128, 100)


def test_tone_lands_in_the_mel_bin_of_its_frequency():
    t = np.arange(16000) / 16000
    tone = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    peak = mel_power(tone, 80).mean(axis=1).argmax()
    bank = mel_filters(80)
    freqs = np.linspace(0, 8000, bank.shape[1])
    centre = freqs[bank[peak].argmax()]
    assert abs(centre - 1000) < 80


def test_whisper_log_mel_floor_and_scale():
    wave = np.concatenate([speechlike(1.0), np.zeros(16000, dtype=np.float32)])
    mel = whisper_log_mel(wave, 128)
    assert mel.shape == (128, 200) and mel.dtype == np.float32
    # silence sits on the floor, 8 decades below the max, i.e. 2.0 below it after the /4 scaling
    assert np.isclose(mel.max() - mel.min(), 2.0, atol=1e-5)
    assert np.isclose(mel[:, -50:], mel.min()).all()


def test_log_mel_25hz_keeps_loudness():
    """Doubling amplitude shifts every (unfloored) bin by log10(4): no per-utterance normalisation."""
    wave = speechlike(1.28, seed=3)
    quiet, loud = log_mel_25hz(wave), log_mel_25hz(2 * wave)
    assert quiet.shape == (32, 80)
    assert np.allclose(loud - quiet, np.log10(4.0), atol=1e-3)
