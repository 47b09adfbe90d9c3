"""Fixtures for tests that run a model on recordings (predict, serve): a tiny UNTRAINED model
directory, and real speech (RAVDESS clips from the shared data) joined with pauses.

Its predictions mean nothing; it exists so that loading, tokenizing, streaming through a memory
and writing outputs can be tested end to end in seconds. Built with the same `save_parts` a
trained run uses, so `load_bundle` reads it like any other model directory.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import SHARED_DATA  # noqa: E402

RAVDESS = SHARED_DATA / "ravdess16k"

LABELS = ("neu", "hap", "sad", "ang")
CODEBOOK = 32
N_LIMIT = 256


def _fit_audio(seconds: float = 4.0, seed: int = 0) -> list[np.ndarray]:
    """A few seconds of varied seeded audio (tones at several pitches + noise) to fit k-means on."""
    rng = np.random.default_rng(seed)
    sr = 16000
    t = np.arange(int(seconds * sr)) / sr
    waves = []
    for f in (110.0, 220.0, 440.0, 880.0):
        amp = 0.05 + 0.3 * np.abs(np.sin(2 * np.pi * 0.7 * t))
        waves.append((amp * np.sin(2 * np.pi * f * t) + 0.02 * rng.standard_normal(t.size)).astype(np.float32))
    waves.append((0.1 * rng.standard_normal(t.size)).astype(np.float32))
    return waves


def tiny_bundle(tmp_dir: str | Path, name: str = "tiny_model", prosody_marks: bool = False) -> Path:
    """Write an untrained tiny model directory under `tmp_dir` and return its path.

    kmeans tokenizer (32 codes, 40 mel bins) + a 2-layer, 32-wide Llama SLM (n_limit 256),
    labels neu/hap/sad/ang; `prosody_marks`: the SLM reads speaker-relative prosody marks.
    Seeded: two calls give identical weights.
    """
    from convmem.bundle import save_parts
    from convmem.slm.model import SLMConfig, build_model, make_vocab
    from convmem.tokenizers.kmeans import KMeansConfig, LogMelKMeansTokenizer

    tok = LogMelKMeansTokenizer(KMeansConfig(codebook_size=CODEBOOK, n_mels=40, seed=0, max_fit_frames=2000))
    tok.fit(_fit_audio())
    cfg = SLMConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, n_limit=N_LIMIT,
                    max_position_embeddings=1024, init_seed=0, prosody_marks=prosody_marks)
    vocab = make_vocab(cfg, CODEBOOK, LABELS)
    slm = build_model(cfg, vocab)
    return save_parts(Path(tmp_dir) / name, labels=LABELS, n_limit=N_LIMIT,
                      config={"note": "untrained test fixture (tests/model_fixture.py)"},
                      tokenizer=tok, slm=slm)


def speech_clips(n: int, seed: int = 0) -> list[np.ndarray]:
    """`n` real RAVDESS speech clips (16 kHz float32, ~3.5 s, 1 s silence at the start), chosen by
    a seeded draw over actors and files; skips the test when the shared data is absent."""
    import soundfile as sf

    files = sorted(RAVDESS.glob("Actor_*/*.flac"))
    if not files:
        pytest.skip(f"shared RAVDESS data not found at {RAVDESS}")
    rng = np.random.default_rng(seed)
    return [sf.read(files[i], dtype="float32")[0] for i in rng.choice(len(files), n, replace=False)]


def speech_recording(n: int = 6, seed: int = 0, pause: tuple[float, float] = (0.5, 1.5)
                     ) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Clips joined with seeded pauses: (float32[samples] at 16 kHz, [(start, end)] of each clip)."""
    rng = np.random.default_rng(seed + 1)
    parts, spans, t = [], [], 0
    for clip in speech_clips(n, seed):
        spans.append((t / 16000, (t + clip.size) / 16000))
        gap = np.zeros(int(rng.uniform(*pause) * 16000), np.float32)
        parts += [clip, gap]
        t += clip.size + gap.size
    return np.concatenate(parts), spans
