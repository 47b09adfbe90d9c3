"""Fixtures of the service tests: the real Predictor on the untrained tiny model, and speech.

Speech comes from eSpeak NG (bundled with the `espeakng-loader` wheel), so silero-vad finds real
utterances without any downloaded or shared data.
"""

from __future__ import annotations

import numpy as np
import pytest

SENTENCES = ("Hello there, how are you doing today?", "I am quite well, thank you for asking.",
             "That is not what we agreed on at all.")


@pytest.fixture(scope="session")
def tiny_predictor(tmp_path_factory):
    import torch

    from convmem.predict import Predictor
    from tests.model_fixture import tiny_bundle

    torch.set_num_threads(1)
    return Predictor.load(tiny_bundle(tmp_path_factory.mktemp("serve_model")), memory="dpm")


def speech(n: int = 2, pause_s: float = 0.8) -> tuple[np.ndarray, int, list[np.ndarray]]:
    """`n` spoken sentences, two voices, with `pause_s` of silence around each:
    (recording float32[samples], its rate (eSpeak's native 22.05 kHz), [each sentence's wave])."""
    from convmem.corpus.espeak import VoiceSettings, native_sample_rate, synthesize

    sr = native_sample_rate()
    clips = [synthesize(SENTENCES[i % len(SENTENCES)], VoiceSettings(voice=("en-us", "en-us+f3")[i % 2]))
             for i in range(n)]
    gap = np.zeros(int(pause_s * sr), np.float32)
    parts = [gap[: sr // 4]]
    for c in clips:
        parts += [c, gap]
    return np.concatenate(parts).astype(np.float32), sr, clips
