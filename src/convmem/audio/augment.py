"""Speaker perturbation: more training speakers than the corpus has.

A from-scratch emotion SLM trained on a handful of speakers learns who is speaking rather than how
they feel: on an unseen speaker its one-shot predictions follow that speaker's voice (the synthetic
corpus makes this extreme on purpose: habitual voices differ more than emotions move them; the demo
SLM predicted mostly one emotion for each held-out speaker). Measured effect on the default
synthetic corpus (5-fold LOSO, README "The emotion SLM"): UA up 2.5 (`none`) and 4.8 (`window`)
points, WA unchanged within noise, so it is off by default (copies 0). Speed
perturbation (Ko et al. 2015, Kaldi's 0.9/1.0/1.1) plus a gain change gives every speaker of a
training dialogue copy a new habitual pitch, tempo and loudness. Emotion stays put *relative to the
speaker*, and the perturbation is drawn once per speaker per copy, so the dialogue's history still
tells the model what that speaker's habit is: the property context is supposed to supply.

Training data only: test dialogues are never perturbed; the tokenizer is fitted on the original
audio. Speeds come from a rational approximation (denominator <= 64) so that polyphase resampling
stays cheap; the factor actually applied is the one returned.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from convmem.errors import ConfigError


@dataclass(frozen=True)
class SpeakerAugmentConfig:
    """copies: perturbed copies of every training dialogue (0 = off, the paper's setting);
    speed: factors drawn log-uniformly in [e^-speed, e^speed] (0.12 ≈ ±2 semitones, ±12 % tempo);
    gain_db: gains drawn uniformly in [-gain_db, +gain_db]; seed: the draws' seed."""

    copies: int = 0
    speed: float = 0.12
    gain_db: float = 6.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 <= int(self.copies) <= 16:
            raise ConfigError(f"augment.copies must be in [0, 16], got {self.copies}")
        if not 0.0 <= float(self.speed) <= 0.5:
            raise ConfigError(f"augment.speed must be in [0, 0.5] (log of the largest factor), got {self.speed}")
        if not 0.0 <= float(self.gain_db) <= 30.0:
            raise ConfigError(f"augment.gain_db must be in [0, 30] dB, got {self.gain_db}")


@dataclass(frozen=True)
class Perturbation:
    """One speaker's change in one dialogue copy: speed = p/q exactly (pitch and tempo x speed)."""

    speed: Fraction
    gain_db: float

    def apply(self, wave: np.ndarray) -> np.ndarray:
        """float32[n] -> float32[round(n / speed)], `speed` times faster and higher, gain applied."""
        from scipy.signal import resample_poly

        wave = np.asarray(wave, dtype=np.float64)
        if self.speed != 1:
            # output rate / input rate = 1 / speed = q / p
            wave = resample_poly(wave, self.speed.denominator, self.speed.numerator)
        return (wave * 10.0 ** (self.gain_db / 20.0)).astype(np.float32)


def draw_perturbations(cfg: SpeakerAugmentConfig, dialogue_id: str, speakers: list[str],
                       copy: int) -> dict[str, Perturbation]:
    """A Perturbation per speaker of copy `copy` of a dialogue; the same arguments give the same
    draws on any machine and in any order (seeded by seed, a CRC of the dialogue id and copy)."""
    rng = np.random.default_rng([int(cfg.seed), zlib.crc32(dialogue_id.encode()), int(copy)])
    out = {}
    for speaker in sorted(set(speakers)):
        factor = float(np.exp(rng.uniform(-cfg.speed, cfg.speed)))
        gain = float(rng.uniform(-cfg.gain_db, cfg.gain_db))
        out[speaker] = Perturbation(Fraction(factor).limit_denominator(64), gain)
    return out
