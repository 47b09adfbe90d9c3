"""Speaker perturbation: more training speakers than the corpus has.

A from-scratch emotion SLM trained on a handful of speakers learns who is speaking rather than how
they feel: on an unseen speaker its one-shot predictions follow that speaker's voice (the synthetic
corpus makes this extreme on purpose: habitual voices differ more than emotions move them; the demo
SLM predicted mostly one emotion for each held-out speaker). Measured effect on the default
synthetic corpus (5-fold LOSO, docs/experiments/slm-synthetic-loso.md): UA up 2.5 (`none`) and 4.8 (`window`)
points, WA unchanged within noise, so it is off by default (copies 0). Speed
perturbation (Ko et al. 2015, Kaldi's 0.9/1.0/1.1) plus a gain change gives every speaker of a
training dialogue copy a new habitual pitch, tempo and loudness. Emotion stays put *relative to the
speaker*, and the perturbation is drawn once per speaker per copy, so the dialogue's history still
tells the model what that speaker's habit is: the property context is supposed to supply.

Resampling moves pitch and tempo together. `tempo` adds a time stretch that keeps the pitch (WSOLA,
the `audiotsm` library) and `pause` resizes the silences inside each turn, both drawn on their own,
because a speaker's tempo is not one uniform stretch (eSpeak NG at 235 instead of 165 wpm shortens
sounds 1.41x but pauses 2.1x). Neither stopped the SLM from reading a held-out speaker's habitual
tempo as arousal on the synthetic corpus (docs/experiments/habit-misreads.md), so both are off (0) by default.

Training data only: test dialogues are never perturbed; the tokenizer is fitted on the original
audio. Speeds come from a rational approximation (denominator <= 64) so that polyphase resampling
stays cheap; the factor actually applied is the one returned.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from fractions import Fraction
from typing import Annotated

import numpy as np

from convmem.config import Range, Seed
from convmem.errors import ConfigError


@dataclass(frozen=True)
class SpeakerAugmentConfig:
    """copies: perturbed copies of every training dialogue (0 = off, the paper's setting);
    speed: factors drawn log-uniformly in [e^-speed, e^speed] (0.12 ≈ ±2 semitones, ±12 % tempo);
    gain_db: gains drawn uniformly in [-gain_db, +gain_db]; tempo: time-stretch factors with the
    pitch kept, drawn log-uniformly in [e^-tempo, e^tempo] (0 = none); pause: factors on the length
    of every silence inside a turn, log-uniform in [e^-pause, e^pause] (0 = none); seed: the draws' seed."""

    copies: Annotated[int, Range(0, 16)] = 0
    speed: Annotated[float, Range(0, 0.5)] = 0.12  # log of the largest factor
    gain_db: Annotated[float, Range(0, 30)] = 6.0
    tempo: Annotated[float, Range(0, 0.5)] = 0.0  # log of the largest factor
    pause: Annotated[float, Range(0, 1)] = 0.0  # log of the largest factor
    seed: Seed = 0

    def __post_init__(self) -> None:
        if not 0 <= int(self.copies) <= 16:
            raise ConfigError(f"augment.copies must be in [0, 16], got {self.copies}")
        if not 0.0 <= float(self.speed) <= 0.5:
            raise ConfigError(f"augment.speed must be in [0, 0.5] (log of the largest factor), got {self.speed}")
        if not 0.0 <= float(self.gain_db) <= 30.0:
            raise ConfigError(f"augment.gain_db must be in [0, 30] dB, got {self.gain_db}")
        if not 0.0 <= float(self.tempo) <= 0.5:
            raise ConfigError(f"augment.tempo must be in [0, 0.5] (log of the largest factor), got {self.tempo}")
        if not 0.0 <= float(self.pause) <= 1.0:
            raise ConfigError(f"augment.pause must be in [0, 1] (log of the largest factor), got {self.pause}")


@dataclass(frozen=True)
class Perturbation:
    """One speaker's change in one dialogue copy: speed = p/q exactly (pitch and tempo x speed),
    then the turn's inner silences x pause, then tempo (duration / tempo, pitch kept)."""

    speed: Fraction
    gain_db: float
    tempo: float = 1.0
    pause: float = 1.0

    def apply(self, wave: np.ndarray) -> np.ndarray:
        """float32[n] (16 kHz) -> float32[m]: `speed` times faster and higher, inner silences `pause`
        times longer, `tempo` times faster at the same pitch, gain applied. m = round(n / speed) when
        pause and tempo are 1; a tempo alone divides the length by tempo (rounded)."""
        from scipy.signal import resample_poly

        wave = np.asarray(wave, dtype=np.float64)
        if self.speed != 1:
            # output rate / input rate = 1 / speed = q / p
            wave = resample_poly(wave, self.speed.denominator, self.speed.numerator)
        if self.pause != 1.0:
            wave = _scale_pauses(wave, self.pause)
        if self.tempo != 1.0:
            wave = _time_stretch(wave, self.tempo)
        return (wave * 10.0 ** (self.gain_db / 20.0)).astype(np.float32)


_PAUSE_DB = 30.0  # 10 ms frames this far below the turn's loudest are silent (prosody's speech test)
_PAUSE_MIN_FRAMES = 3  # 45 ms; shorter silences are stop closures, not pauses


def _scale_pauses(wave: np.ndarray, factor: float) -> np.ndarray:
    """float64[n] (16 kHz) -> float64[m]: each silence of >= 45 ms (3 silent 25 ms frames at a 10 ms
    hop) between the turn's first and last sound resized by `factor` (linear interpolation of the
    silence itself); the sounds and the turn's leading and trailing silence are kept sample for sample."""
    from convmem.audio.io import SAMPLE_RATE
    from convmem.audio.prosody import FRAME_S, frame_energy_db

    energy = frame_energy_db(wave, SAMPLE_RATE)
    silent = energy <= energy.max() - _PAUSE_DB
    sound = np.nonzero(~silent)[0]
    if sound.size < 2:
        return wave
    hop = int(round(FRAME_S * SAMPLE_RATE))
    pieces, cursor, i = [], 0, int(sound[0])
    while i <= sound[-1]:
        if not silent[i]:
            i += 1
            continue
        j = i
        while silent[j]:
            j += 1  # stops at the last sound at the latest
        if j - i >= _PAUSE_MIN_FRAMES:
            a, b = i * hop, j * hop
            gap = wave[a:b]
            pieces += [wave[cursor:a], np.interp(np.linspace(0, gap.size - 1, max(1, round(gap.size * factor))),
                                                 np.arange(gap.size), gap)]
            cursor = b
        i = j
    pieces.append(wave[cursor:])
    return np.concatenate(pieces)


_WSOLA_FRAME = 640  # 40 ms at 16 kHz: a few pitch periods, the usual WSOLA frame for speech


def _time_stretch(wave: np.ndarray, tempo: float) -> np.ndarray:
    """float64[n] -> float64[round(n / tempo)] at the same pitch (WSOLA); a wave shorter than two
    frames is returned unchanged (nothing to overlap)."""
    from audiotsm import wsola
    from audiotsm.io.array import ArrayReader, ArrayWriter

    if wave.size < 2 * _WSOLA_FRAME:
        return wave
    out = ArrayWriter(1)
    # audiotsm delays its output by half a frame and drops the last frame or so: zeros after the
    # wave flush it, and the delay is cut, so the stretched wave keeps its start and its end
    wsola(1, speed=tempo, frame_length=_WSOLA_FRAME).run(ArrayReader(np.pad(wave, (0, 2 * _WSOLA_FRAME))[None, :]), out)
    n = round(wave.size / tempo)
    stretched = out.data[0][_WSOLA_FRAME // 2: _WSOLA_FRAME // 2 + n]
    return np.pad(stretched, (0, n - stretched.size))


def draw_perturbations(cfg: SpeakerAugmentConfig, dialogue_id: str, speakers: list[str],
                       copy: int) -> dict[str, Perturbation]:
    """A Perturbation per speaker of copy `copy` of a dialogue; the same arguments give the same
    draws on any machine and in any order (seeded by seed, a CRC of the dialogue id and copy)."""
    rng = np.random.default_rng([int(cfg.seed), zlib.crc32(dialogue_id.encode()), int(copy)])
    out = {}
    for speaker in sorted(set(speakers)):
        factor = float(np.exp(rng.uniform(-cfg.speed, cfg.speed)))
        gain = float(rng.uniform(-cfg.gain_db, cfg.gain_db))
        # drawn only when on, so that tempo 0 and pause 0 keep every earlier configuration's draws
        tempo = float(np.exp(rng.uniform(-cfg.tempo, cfg.tempo))) if cfg.tempo else 1.0
        pause = float(np.exp(rng.uniform(-cfg.pause, cfg.pause))) if cfg.pause else 1.0
        out[speaker] = Perturbation(Fraction(factor).limit_denominator(64), gain, tempo, pause)
    return out
