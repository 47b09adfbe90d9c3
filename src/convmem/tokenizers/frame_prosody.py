"""Prosody on the 25 Hz code grid: per-code log F0 and the prosodic block of the `kmeans` features.

A 25 ms log-mel frame barely resolves the harmonics of a voice, so k-means on log-mel alone spends
its clusters on phones and loses most of the pitch, which carries much of the emotion (Banse &
Scherer, 1996); after per-utterance mean normalisation it also loses the level. The tokenizers that
want prosody in their codes take it from here, on exactly their frame grid.
"""

from __future__ import annotations

import numpy as np

from convmem.tokenizers.base import SAMPLE_RATE

PITCH_FRAMES_PER_CODE = 4  # 10 ms pitch frames per 40 ms code
MIN_VOICED = 2  # of the four, for the code to count as voiced
VOICING_JUMP_ST = 24.0  # distance between a voiced and an unvoiced code, in semitones (two octaves)


def code_log_f0(wave: np.ndarray, frames: int) -> np.ndarray:
    """Per-code log2 F0 of `wave` (float32[samples] at 16 kHz), float64[frames], NaN = unvoiced.

    F0 is Praat's autocorrelation tracker (`convmem.audio.prosody.f0_contour`, 10 ms frames); a
    40 ms code is voiced when at least two of its four pitch frames are, and its F0 is their median.
    """
    from convmem.audio.prosody import f0_contour

    f0 = f0_contour(wave, SAMPLE_RATE)
    # Praat's track is shorter than the 10 ms grid by about one analysis window (its frames need
    # the whole window inside the sound) and is centred in the sound: centre it on the grid too.
    track = np.full(frames * PITCH_FRAMES_PER_CODE, np.nan)
    skip = max(0, (frames * PITCH_FRAMES_PER_CODE - f0.size) // 2)
    n = min(f0.size, track.size - skip)
    vals = f0[:n]
    track[skip: skip + n] = np.where(vals > 0, np.log2(np.maximum(vals, 1e-6)), np.nan)
    blocks = track.reshape(frames, PITCH_FRAMES_PER_CODE)
    voiced = np.isfinite(blocks).sum(axis=1) >= MIN_VOICED
    out = np.full(frames, np.nan)
    if voiced.any():
        out[voiced] = np.nanmedian(blocks[voiced], axis=1)
    return out


def prosody_block(log_mel: np.ndarray, log_f0: np.ndarray, weight: float) -> np.ndarray:
    """Three prosodic columns per code, in perceptual units scaled by `weight`.

    Args:
        log_mel: float32[frames, n_mels], absolute log10 mel power (before any normalisation).
        log_f0: float64[frames], log2 F0 in Hz, NaN = unvoiced (`code_log_f0`).
        weight: 1.0 puts level in dB and pitch in semitones next to log-mel bins in bels (log10),
            so the three columns and the ~80 spectral ones weigh about equally in a distance.
    Returns:
        float32[frames, 3]: level (dB re full scale), F0 (semitones re 100 Hz, 0 when unvoiced),
        voicing (0, or VOICING_JUMP_ST when voiced) — all times `weight`.
    """
    level_db = 10.0 * np.log10(np.maximum((10.0 ** log_mel.astype(np.float64)).sum(axis=1), 1e-12))
    voiced = np.isfinite(log_f0)
    semitones = np.where(voiced, 12.0 * (np.where(voiced, log_f0, 0.0) - np.log2(100.0)), 0.0)
    block = np.stack([level_db, semitones, voiced * VOICING_JUMP_ST], axis=1)
    return (weight * block).astype(np.float32)
