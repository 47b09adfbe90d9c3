"""GE2E loader: same network output as resemblyzer's own on fixed frames; pinned package checks."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from convmem.errors import AudioError, ConfigError
from convmem.packaged import PackagedFile
from convmem.speakers import encoder


@pytest.fixture
def package_encoder(monkeypatch):
    """resemblyzer's VoiceEncoder, imported with its unused audio dependencies stubbed (the wheel
    is installed --no-deps: librosa and webrtcvad are only needed by its own preprocessing)."""
    encoder.mel_frames(np.zeros(1600, np.float32))  # transformers probes for librosa once, before the stub
    for name in ("librosa", "webrtcvad"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    morphology = types.ModuleType("scipy.ndimage.morphology")
    morphology.binary_dilation = None
    monkeypatch.setitem(sys.modules, "scipy.ndimage.morphology", morphology)
    for name in [m for m in sys.modules if m.startswith("resemblyzer")]:
        monkeypatch.delitem(sys.modules, name)
    from resemblyzer.voice_encoder import VoiceEncoder

    return VoiceEncoder(device="cpu", verbose=False)


def _signal(seconds: float = 3.0) -> np.ndarray:
    t = np.arange(int(seconds * 16000)) / 16000
    rng = np.random.default_rng(3)
    f0 = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)
    wave = sum(np.sin(2 * np.pi * k * np.cumsum(f0) / 16000) / k for k in range(1, 12))
    return (0.05 * wave * (1 + 0.5 * np.sin(2 * np.pi * 3 * t)) + 0.002 * rng.standard_normal(t.size)).astype(np.float32)


def test_network_equals_the_package_network_on_fixed_frames(package_encoder):
    import torch

    mel = encoder.mel_frames(encoder.normalise_level(_signal()))
    batch = np.stack([mel[0:160], mel[77:237]])
    with torch.no_grad():
        theirs = package_encoder(torch.from_numpy(batch)).numpy()
    ours = encoder.embed_mels(batch)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("n", [1600, 16000, 25_600, 40_000, 123_457])
def test_partials_are_the_package_partials(package_encoder, n):
    _, mel_slices = package_encoder.compute_partial_slices(n, encoder.PARTIAL_RATE, encoder.MIN_COVERAGE)
    assert encoder.partial_slices(n) == [(s.start, s.stop) for s in mel_slices]


def test_utterance_embedding_equals_the_package_pipeline_given_the_same_mel(package_encoder, monkeypatch):
    """The package's embed_utterance (slicing, padding, averaging) with its mel step fed ours."""
    import resemblyzer.audio

    monkeypatch.setattr(resemblyzer.audio, "wav_to_mel_spectrogram", encoder.mel_frames)
    wave = encoder.normalise_level(_signal(4.2))
    np.testing.assert_allclose(encoder.embed_utterance(wave), package_encoder.embed_utterance(wave), atol=1e-5)


def test_same_voice_is_closer_than_another_voice():
    from tests.speakers.voices import two_voices

    wave, gold = two_voices()
    emb = [encoder.embed_utterance(wave[int(a * 16000):int(b * 16000)]) for a, b, _ in gold[:3]]
    assert emb[0] @ emb[2] > emb[0] @ emb[1] + 0.05


def test_missing_package_names_it_and_the_pip_line(monkeypatch):
    monkeypatch.setattr(encoder, "WEIGHTS", PackagedFile("resemblyzer-not-here", "0.1.4", "nope", "pretrained.pt"))
    encoder.load_encoder.cache_clear()
    try:
        with pytest.raises(ConfigError, match=r"resemblyzer-not-here is not installed; run: pip install --no-deps resemblyzer==0.1.4"):
            encoder.load_encoder()
    finally:
        encoder.load_encoder.cache_clear()


def test_wrong_version_or_altered_weights_are_refused(monkeypatch):
    encoder.load_encoder.cache_clear()
    try:
        monkeypatch.setattr(encoder, "WEIGHTS", PackagedFile("resemblyzer", "9.9", "resemblyzer", "pretrained.pt"))
        with pytest.raises(ConfigError, match="is version 0.1.4, expected 9.9"):
            encoder.load_encoder()
        monkeypatch.undo()
        monkeypatch.setattr(encoder, "WEIGHTS_SHA256", "0" * 64)
        with pytest.raises(ConfigError, match="not the pinned file"):
            encoder.load_encoder()
    finally:
        encoder.load_encoder.cache_clear()


def test_bad_audio_is_refused():
    with pytest.raises(AudioError, match="at least 0.1 s"):
        encoder.embed_utterance(np.zeros(100, np.float32))
    with pytest.raises(AudioError, match="mono"):
        encoder.embed_utterance(np.zeros((2, 16000), np.float32))
