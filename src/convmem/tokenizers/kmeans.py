"""k-means codebook over frame features, and the offline default tokenizer: log-mel -> k-means.

Design choice on normalisation (the `kmeans` tokenizer): features are *absolute* log-mel,
standardised per dimension with one global mean/std learned at fit time — there is no
per-utterance mean or variance normalisation. The corpora render emotion relative to each
speaker's habit (anger louder and higher than that speaker's neutral), so per-utterance
normalisation would erase exactly the level and spectral-tilt shifts that separate an angry turn
from a calm one of the same speaker; the emotion SLM sees a speaker's turns in context and can
learn the relative comparison itself. The cost is sensitivity to channel gain across recordings;
that is left to the model and to per-corpus level alignment in the loaders.

`utterance_cmn=True` subtracts each utterance's mean log-mel instead (cepstral mean normalisation in
the log-mel domain, as speaker-independent ASR front ends do): the codes then no longer say how
loud a turn is or what its average spectrum is, which removes a speaker's habitual level and
timbre from the codes together with the emotion's share of them.

`prosody_weight > 0` appends three prosodic columns to every frame before clustering (level in dB,
Praat F0 in semitones, voicing; `frame_prosody.prosody_block`), so a code says how loud and how high
its 40 ms were as well as what its spectrum looked like. Level and pitch are absolute, as the
log-mel is without CMN: the speaker's habit is for the model to learn from context. With CMN this
gives back the level that CMN removes, as one column instead of eighty. Measured on the default
synthetic corpus (docs/experiments/tokenizers-on-synthetic.md), a bag of these codes predicts a held-out speaker's
turn better than a bag of log-mel codes, and much better once compared with the speaker's earlier
turns.
"""

from __future__ import annotations

import zipfile

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from convmem.config import from_dict
from convmem.errors import ConfigError
from convmem.tokenizers.base import (
    FRAME_RATE,
    SAMPLE_RATE,
    config_hash,
    fit_to_frames,
    iter_waveforms,
    n_frames,
    prepare_waveform,
    read_tokenizer_json,
    write_tokenizer_json,
)

CODEBOOK_FILE = "codebook.npz"


class FrameSampler:
    """Uniform seeded sample of at most `cap` rows from a stream of float32[frames, dim] blocks.

    Each row gets a random key and the `cap` smallest keys are kept, which is uniform sampling
    without replacement over the whole stream while holding at most 2 * cap rows in memory.
    """

    def __init__(self, cap: int, seed: int):
        self.cap = cap
        self.rng = np.random.default_rng(seed)
        self.rows: list[np.ndarray] = []
        self.keys: list[np.ndarray] = []
        self.held = 0
        self.seen = 0

    def add(self, block: np.ndarray) -> None:
        self.rows.append(block)
        self.keys.append(self.rng.random(len(block)))
        self.held += len(block)
        self.seen += len(block)
        if self.held > 2 * self.cap:
            self._shrink()

    def _shrink(self) -> None:
        rows, keys = np.concatenate(self.rows), np.concatenate(self.keys)
        if len(rows) > self.cap:
            keep = np.sort(np.argpartition(keys, self.cap - 1)[: self.cap])
            rows, keys = rows[keep], keys[keep]
        self.rows, self.keys, self.held = [rows], [keys], len(rows)

    def sample(self) -> np.ndarray:
        """float32[min(cap, seen), dim]."""
        if not self.rows:
            return np.zeros((0, 0), dtype=np.float32)
        self._shrink()
        return self.rows[0]


@dataclass
class KMeansCodebook:
    """Centroids in a centred, scaled feature space: code = nearest centroid of (x - mean) / scale."""

    centroids: np.ndarray  # float32[size, dim]
    mean: np.ndarray  # float32[dim]
    scale: np.ndarray  # float32[dim]

    @classmethod
    def fit(
        cls,
        features: Iterable[np.ndarray],
        size: int,
        seed: int,
        max_frames: int,
        n_init: int = 1,
    ) -> KMeansCodebook:
        """Fit `size` centroids on frames from `features` (each float32[frames, dim]).

        At most `max_frames` frames (a seeded uniform sample) are clustered, so fitting time is
        bounded whatever the amount of audio. Raises ConfigError when there are fewer frames
        than clusters.
        """
        from sklearn.cluster import MiniBatchKMeans

        sampler = FrameSampler(max_frames, seed)
        for block in features:
            sampler.add(block)
        data = sampler.sample()
        if len(data) < size:
            raise ConfigError(
                f"only {len(data)} frames of audio ({len(data) / FRAME_RATE:.1f} s) to fit "
                f"{size} clusters: give at least {size / FRAME_RATE:.1f} s of training audio "
                "or a smaller codebook_size"
            )
        mean = data.mean(axis=0)
        # One scale for all dimensions (they are commensurate: log powers, or hidden units):
        # per-dimension std would blow up near-constant bins (e.g. at the log floor) into noise.
        scale = np.full_like(mean, max(float(data.std(axis=0).mean()), 1e-5))
        # float64: sklearn upcasts float32 distance blocks chunk by chunk, which is much slower
        z = ((data - mean) / scale).astype(np.float64)
        km = MiniBatchKMeans(
            n_clusters=size, random_state=seed, n_init=n_init, batch_size=4096, max_iter=50, max_no_improvement=10
        ).fit(z)
        return cls(
            centroids=km.cluster_centers_.astype(np.float32),
            mean=mean.astype(np.float32),
            scale=scale.astype(np.float32),
        )

    def assign(self, features: np.ndarray) -> np.ndarray:
        """float32[frames, dim] -> int64[frames], index of the nearest centroid (Euclidean)."""
        z = (features - self.mean) / self.scale
        dist = (z * z).sum(axis=1, keepdims=True) - 2.0 * z @ self.centroids.T + (self.centroids**2).sum(axis=1)
        return dist.argmin(axis=1).astype(np.int64)

    def digest_parts(self) -> tuple[np.ndarray, ...]:
        return (self.centroids, self.mean, self.scale)

    def save(self, path: Path) -> None:
        from convmem.fileio import atomic_open

        with atomic_open(path, "wb") as fh:
            np.savez(fh, centroids=self.centroids, mean=self.mean, scale=self.scale)

    @classmethod
    def load(cls, path: Path, size: int) -> KMeansCodebook:
        if not path.is_file():
            raise ConfigError(f"{path}: codebook file not found")
        try:
            with np.load(path, allow_pickle=False) as data:
                book = cls(data["centroids"], data["mean"], data["scale"])
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise ConfigError(f"{path}: not a valid codebook, damaged or truncated ({exc}); refit the "
                              "tokenizer (retrain the model) or copy the file again") from None
        if not all(np.isfinite(a).all() for a in (book.centroids, book.mean, book.scale)):
            raise ConfigError(f"{path}: codebook holds NaN or infinite values; refit the tokenizer (retrain the model)")
        if book.centroids.shape[0] != size or book.centroids.shape[1] != book.mean.shape[0]:
            raise ConfigError(f"{path}: codebook shape {book.centroids.shape} does not match codebook_size {size}")
        return book


@dataclass(frozen=True)
class KMeansConfig:
    codebook_size: int = 512
    n_mels: int = 80
    seed: int = 0
    max_fit_frames: int = 100_000  # ~67 min of audio; bounds fitting time
    n_init: int = 1  # sklearn's own choice for k-means++ init; 3 costs 3x the init time
    # Subtract each utterance's mean log-mel before clustering (see the module doc for the cost).
    utterance_cmn: bool = False
    # Weight of the prosodic columns (level, F0, voicing); 0 = log-mel only (see the module doc).
    prosody_weight: float = 0.0

    def __post_init__(self):
        if (self.codebook_size < 2 or self.n_mels < 8 or self.max_fit_frames < self.codebook_size
                or not self.prosody_weight >= 0):
            raise ValueError(
                "need codebook_size >= 2, n_mels >= 8, max_fit_frames >= codebook_size and "
                f"prosody_weight >= 0, got {self.codebook_size}, {self.n_mels}, {self.max_fit_frames}, "
                f"{self.prosody_weight}"
            )
        object.__setattr__(self, "prosody_weight", float(self.prosody_weight))  # 1 and 1.0: one fingerprint


class FittedKMeansMixin:
    """fit/fingerprint/encode plumbing shared by the k-means tokenizers (features differ)."""

    kind: str
    frame_rate = FRAME_RATE
    codebook: KMeansCodebook | None
    # options added after the kind's first release -> what a config saved without them means; left
    # out of the fingerprint at that value, so tokenizers saved before they existed keep their
    # fingerprint (and their cached codes)
    later_options: dict = {}

    @classmethod
    def _saved_config(cls, config_type, directory: Path):
        """The config in `directory`'s tokenizer.json, with `later_options` filled in where absent."""
        saved = read_tokenizer_json(directory, cls.kind)["config"]
        return from_dict(config_type, {**cls.later_options, **saved}, str(directory))

    def features(self, wave: np.ndarray) -> np.ndarray:
        """float32[samples] at 16 kHz -> float32[n_frames(samples), dim]."""
        raise NotImplementedError

    def _config_dict(self) -> dict:
        return asdict(self.config)

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    @property
    def is_fitted(self) -> bool:
        return self.codebook is not None

    def _fitted_codebook(self) -> KMeansCodebook:
        """The codebook; ConfigError unless everything the kind learns (`is_fitted`) is there."""
        if not self.is_fitted:
            raise ConfigError(f"{self.kind} tokenizer is not fitted: call fit(...) or load a saved one")
        return self.codebook

    @property
    def fingerprint(self) -> str:
        book = self._fitted_codebook()  # first: `_fingerprint_extra` may read other learned state
        return config_hash({"kind": self.kind, **self._fingerprint_config()}, *self._fingerprint_extra(),
                           *book.digest_parts())

    def _fingerprint_config(self) -> dict:
        later = self.later_options
        return {k: v for k, v in self._config_dict().items() if k not in later or v != later[k]}

    def _fingerprint_extra(self) -> tuple:
        """Digests of anything besides config and codebook that decides the codes."""
        return ()

    def _manifest_extra(self) -> dict:
        """Facts written beside the config in tokenizer.json and checked at load."""
        return {}

    def fit(self, waveforms: Iterable[np.ndarray], sample_rate: int = SAMPLE_RATE):
        """Learn the codebook from `waveforms` (float32[samples] each); returns self.

        Only the audio given is used: pass training sessions only (see `fit_on_dialogues`).
        """
        cfg = self.config
        feats = (self.features(w) for w in iter_waveforms(waveforms, sample_rate))
        self.codebook = KMeansCodebook.fit(feats, cfg.codebook_size, cfg.seed, cfg.max_fit_frames, cfg.n_init)
        return self

    def encode(self, waveform: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        """float32[samples] -> int64[n_frames(samples at 16 kHz)] in [0, codebook_size)."""
        book = self._fitted_codebook()
        return book.assign(self.features(prepare_waveform(waveform, sample_rate)))

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        self._fitted_codebook().save(directory / CODEBOOK_FILE)
        write_tokenizer_json(directory, self.kind, self._config_dict(), self.fingerprint, **self._manifest_extra())
        return directory


class LogMelKMeansTokenizer(FittedKMeansMixin):
    """`kmeans`: 80-bin absolute log-mel at 25 Hz -> k-means codebook (default 512 codes)."""

    kind = "kmeans"
    later_options = {"utterance_cmn": False, "prosody_weight": 0.0}

    def __init__(self, config: KMeansConfig | None = None, codebook: KMeansCodebook | None = None):
        self.config = config or KMeansConfig()
        self.codebook = codebook

    @classmethod
    def from_config(cls, config: dict) -> LogMelKMeansTokenizer:
        return cls(from_dict(KMeansConfig, config, "kmeans tokenizer"))

    @classmethod
    def load(cls, directory: str | Path) -> LogMelKMeansTokenizer:
        directory = Path(directory)
        config = cls._saved_config(KMeansConfig, directory)
        return cls(config, KMeansCodebook.load(directory / CODEBOOK_FILE, config.codebook_size))

    def features(self, wave: np.ndarray) -> np.ndarray:
        from convmem.tokenizers.logmel import log_mel_25hz

        cfg = self.config
        frames = n_frames(wave.size)
        fitted = fit_to_frames(wave, frames)
        mel = log_mel_25hz(fitted, cfg.n_mels)
        spectral = mel - mel.mean(axis=0, keepdims=True) if cfg.utterance_cmn else mel
        if cfg.prosody_weight == 0:
            return spectral
        from convmem.tokenizers.frame_prosody import code_log_f0, prosody_block

        return np.hstack([spectral, prosody_block(mel, code_log_f0(fitted, frames), cfg.prosody_weight)])
