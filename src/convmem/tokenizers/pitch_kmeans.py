"""`kmeans-f0`: log-mel k-means codes crossed with a quantised pitch level, still one 25 Hz codebook.

Why: log-mel codes lose most of the pitch (`frame_prosody`'s module doc). `kmeans` with
`prosody_weight` clusters pitch and level with the spectrum; this kind quantises pitch on its own.
pGSLM (Kharitonov et al., 2022) models quantised F0 beside its units; to keep the paper's single
codebook (eq. 1-2: one token per code) the two are crossed here:

    code = spectral_code * (pitch_bins + 1) + level      level 0 = unvoiced,
                                                          1..pitch_bins = voiced log-F0 bin

so `codebook_size = spectral_size * (pitch_bins + 1)`. Both parts are fitted on training audio
only: the spectral codebook exactly as `kmeans` (absolute log-mel, one global scale), and the
pitch bins as equal-mass quantiles of voiced log-F0 over the training frames. F0 is Praat's
autocorrelation tracker (`convmem.audio.prosody.f0_contour`, 10 ms frames); a 40 ms code is
voiced when at least two of its four pitch frames are, and its F0 is their median. Absolute F0, not
speaker-normalised: the speaker's habit is for the model to learn from context, as for loudness
(see `kmeans`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convmem.config import from_dict
from convmem.errors import ConfigError
from convmem.tokenizers.base import (
    SAMPLE_RATE,
    fit_to_frames,
    iter_waveforms,
    n_frames,
    prepare_waveform,
)
from convmem.tokenizers.frame_prosody import code_log_f0
from convmem.tokenizers.kmeans import CODEBOOK_FILE, FittedKMeansMixin, FrameSampler, KMeansCodebook

PITCH_FILE = "pitch_bins.npy"


@dataclass(frozen=True)
class PitchKMeansConfig:
    spectral_size: int = 64
    pitch_bins: int = 4
    n_mels: int = 80
    seed: int = 0
    max_fit_frames: int = 100_000
    n_init: int = 1

    def __post_init__(self):
        if self.spectral_size < 2 or self.pitch_bins < 1 or self.n_mels < 8 or self.max_fit_frames < self.spectral_size:
            raise ValueError("need spectral_size >= 2, pitch_bins >= 1, n_mels >= 8 and max_fit_frames >= "
                             f"spectral_size, got {self.spectral_size}, {self.pitch_bins}, {self.n_mels}, "
                             f"{self.max_fit_frames}")


class PitchKMeansTokenizer(FittedKMeansMixin):
    """`kmeans-f0`: (log-mel k-means code, pitch level) crossed into one code (module doc).

    Fingerprint, save and the not-fitted check are the k-means mixin's; the pitch bin edges are
    the extra learned state (`is_fitted`, `_fingerprint_extra`, and their own file)."""

    kind = "kmeans-f0"

    def __init__(self, config: PitchKMeansConfig | None = None, codebook: KMeansCodebook | None = None,
                 edges: np.ndarray | None = None):
        self.config = config or PitchKMeansConfig()
        self.codebook = codebook
        self.edges = None if edges is None else np.asarray(edges, dtype=np.float64)

    @classmethod
    def from_config(cls, config: dict) -> PitchKMeansTokenizer:
        return cls(from_dict(PitchKMeansConfig, config, "kmeans-f0 tokenizer"))

    @property
    def codebook_size(self) -> int:
        return self.config.spectral_size * (self.config.pitch_bins + 1)

    @property
    def is_fitted(self) -> bool:
        return self.codebook is not None and self.edges is not None

    def _fingerprint_extra(self) -> tuple:
        return (self.edges,)

    def _features(self, wave: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """16 kHz wave → (log-mel float32[frames, n_mels], log2 F0 float64[frames], NaN = unvoiced)."""
        from convmem.tokenizers.logmel import log_mel_25hz

        frames = n_frames(wave.size)
        fitted = fit_to_frames(wave, frames)
        return log_mel_25hz(fitted, self.config.n_mels), code_log_f0(fitted, frames)

    def fit(self, waveforms, sample_rate: int = SAMPLE_RATE) -> PitchKMeansTokenizer:
        """Fit the spectral codebook and the pitch bins on `waveforms` (training audio only)."""
        cfg = self.config
        f0_sampler = FrameSampler(cfg.max_fit_frames, cfg.seed + 1)

        def mels():  # the codebook's frames; voiced F0 is sampled on the way
            for wave in iter_waveforms(waveforms, sample_rate):
                mel, f0 = self._features(wave)
                voiced = f0[np.isfinite(f0)]
                if voiced.size:
                    f0_sampler.add(voiced[:, None])
                yield mel

        book = KMeansCodebook.fit(mels(), cfg.spectral_size, cfg.seed, cfg.max_fit_frames, cfg.n_init)
        voiced = f0_sampler.sample()
        if voiced.size < cfg.pitch_bins * 10:
            raise ConfigError(f"kmeans-f0: only {voiced.size} voiced frames in the training audio to fit "
                              f"{cfg.pitch_bins} pitch bins: give more speech or fewer pitch_bins")
        qs = np.arange(1, cfg.pitch_bins) / cfg.pitch_bins
        self.codebook, self.edges = book, np.quantile(voiced[:, 0], qs)
        return self

    def encode(self, waveform: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        """float32[samples] → int64[n_frames(samples at 16 kHz)] in [0, codebook_size)."""
        book = self._fitted_codebook()
        mel, f0 = self._features(prepare_waveform(waveform, sample_rate))
        level = np.zeros(len(f0), dtype=np.int64)
        voiced = np.isfinite(f0)
        level[voiced] = 1 + np.searchsorted(self.edges, f0[voiced], side="right")
        return book.assign(mel) * (self.config.pitch_bins + 1) + level

    def save(self, directory: str | Path) -> Path:
        from convmem.fileio import atomic_open

        self._fitted_codebook()  # refuse before writing anything
        with atomic_open(Path(directory) / PITCH_FILE, "wb") as fh:
            np.save(fh, self.edges)
        return super().save(directory)

    @classmethod
    def load(cls, directory: str | Path) -> PitchKMeansTokenizer:
        directory = Path(directory)
        config = cls._saved_config(PitchKMeansConfig, directory)
        book = KMeansCodebook.load(directory / CODEBOOK_FILE, config.spectral_size)
        try:
            edges = np.load(directory / PITCH_FILE, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{directory / PITCH_FILE}: missing or unreadable pitch bins ({exc})") from None
        if edges.shape != (config.pitch_bins - 1,):
            raise ConfigError(f"{directory / PITCH_FILE}: {edges.shape[0] if edges.ndim else 0} bin edges, "
                              f"expected {config.pitch_bins - 1} for pitch_bins {config.pitch_bins}")
        return cls(config, book, edges)
