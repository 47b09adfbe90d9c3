"""Tiny generated conversations for the speaker tests: two clearly different eSpeak voices."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

SENTENCES = (
    "The weather was lovely this morning by the lake.",
    "I really cannot believe what you told me yesterday.",
    "We should meet again next week to finish the plan.",
    "Please bring the documents when you come over.",
    "My brother bought a small red boat last summer.",
    "Nobody answered the phone at the office today.",
)


# short replies (about 0.4-1.5 s spoken), as in the turn-taking of a real call
SHORT = ("Yes.", "I see.", "Really?", "Not today.", "Okay then.", "Of course.", "Why not?", "Fine, thanks.",
         "Maybe later.", "No way!", "Sure.", "Thank you.")


@lru_cache(maxsize=4)
def two_voices(turns: int = 6, pause_s: float = 0.6, sentences: tuple[str, ...] = SENTENCES, acted: int | None = None
               ) -> tuple[np.ndarray, tuple[tuple[float, float, int], ...]]:
    """Turns alternating between a low male and a high female eSpeak voice, each a different
    sentence, joined by pauses: (float32[samples] at 16 kHz, ((start, end, voice index), ...)).
    acted: a seed; each turn's pitch, range, rate and loudness then move (seeded), as an actor's do
    between emotions."""
    from convmem.audio.io import resample
    from convmem.corpus.espeak import VoiceSettings, native_sample_rate, synthesize

    voices = (VoiceSettings(voice="en-us+m3", pitch=35), VoiceSettings(voice="en-us+f2", pitch=75))
    rng = np.random.default_rng(acted)
    parts, gold, t = [], [], 0
    for i in range(turns):
        gap = np.zeros(int(pause_s * 16000), np.float32)
        voice = voices[i % 2]
        if acted is not None:
            pitch = int(np.clip(voice.pitch + rng.integers(-20, 21), 0, 100))
            voice = VoiceSettings(voice.voice, rate=int(rng.integers(170, 250)), pitch=pitch,
                                  range=int(rng.integers(20, 90)), volume=int(rng.integers(60, 160)))
        # seeded: eSpeak's random state is process-wide, so unseeded audio depends on earlier tests
        speech = resample(synthesize(sentences[i % len(sentences)], voice, seed=i), native_sample_rate(), 16000)
        parts += [gap, speech]
        t += gap.size
        gold.append((t / 16000, (t + speech.size) / 16000, i % 2))
        t += speech.size
    parts.append(np.zeros(int(pause_s * 16000), np.float32))
    return np.concatenate(parts), tuple(gold)
