"""The code cache: speech-tokenizer codes (and turn prosody) on disk, keyed by audio content.

Cache key (choice): sha256 of the tokenizer fingerprint + the exact float32 16 kHz samples of the
utterance after loading/resampling. Keying on content rather than on path/mtime means a moved or
re-rendered corpus is handled correctly (same samples -> hit, any change -> miss) at the price of
decoding the audio again on a rerun, which costs milliseconds per utterance against the much
larger cost of the encoders. Layout: `root/<fingerprint[:16]>/<key>.npy`, each written
atomically, plus `root/<fingerprint[:16]>/tokenizer.json` saying which tokenizer filled it. Turn
prosody for prosody marks (float64[4], `convmem.audio.relative_prosody.turn_prosody`) is cached the
same way under the pseudo-fingerprint `PROSODY_VERSION` (bump it when `turn_prosody` changes).
Dialogue-level passes through it are in `tokenizers/dialogue_audio.py`.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import numpy as np

from convmem.tokenizers.base import SAMPLE_RATE, SpeechTokenizer, n_frames

CACHE_ENV = "CONVMEM_CACHE"
PROSODY_VERSION = "turn-prosody-v1"


def default_cache_root() -> Path:
    """`$CONVMEM_CACHE/codes`, else `~/.cache/convmem/codes`."""
    base = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "convmem"
    return Path(base).expanduser() / "codes"


class CodeCache:
    """Codes per (tokenizer fingerprint, audio content) on disk; counts hits and misses."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(fingerprint: str, wave: np.ndarray) -> str:
        """sha256 hex of fingerprint + float32[samples] bytes (16 kHz)."""
        h = hashlib.sha256(fingerprint.encode())
        h.update(b"\0%d\0" % SAMPLE_RATE)
        h.update(np.ascontiguousarray(wave, dtype=np.float32).tobytes())
        return h.hexdigest()

    def path(self, fingerprint: str, key: str) -> Path:
        return self.root / fingerprint[:16] / f"{key}.npy"

    @staticmethod
    def _load(path: Path, valid, redo: str) -> np.ndarray | None:
        """The array at `path` when it is there, readable and `valid(array)`; else None (a damaged
        entry warns, saying it will `redo` the work, and counts as absent)."""
        if not path.is_file():
            return None
        try:
            found = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            warnings.warn(f"{path}: unreadable cache entry, {redo} ({exc})", stacklevel=3)
            return None
        if not valid(found):
            warnings.warn(f"{path}: cache entry has wrong shape/dtype, {redo}", stacklevel=3)
            return None
        return found

    @staticmethod
    def _save(path: Path, array: np.ndarray) -> None:
        from convmem.fileio import atomic_open

        with atomic_open(path, "wb") as fh:
            np.save(fh, array, allow_pickle=False)

    def get(self, fingerprint: str, wave: np.ndarray) -> np.ndarray | None:
        """Cached int64[frames] for this audio, or None (a damaged entry counts as absent)."""
        frames = n_frames(wave.size)
        return self._load(self.path(fingerprint, self.key(fingerprint, wave)),
                          lambda c: c.dtype == np.int64 and c.ndim == 1 and c.size == frames, "re-tokenizing")

    def put(self, fingerprint: str, wave: np.ndarray, codes: np.ndarray) -> Path:
        path = self.path(fingerprint, self.key(fingerprint, wave))
        self._save(path, np.asarray(codes, dtype=np.int64))
        return path

    def attach(self, tokenizer: SpeechTokenizer) -> None:
        """Let a tokenizer whose frame features are expensive and codebook-independent (a
        pretrained encoder's) keep them under `root/features`, so a refitted codebook (each LOSO
        fold) or a rerun does not run the encoder again. Others are left alone."""
        if hasattr(tokenizer, "cache_features_in") and not tokenizer.caches_features:
            tokenizer.cache_features_in(self.root / "features")

    def encode(self, tokenizer: SpeechTokenizer, wave: np.ndarray, fingerprint: str | None = None) -> np.ndarray:
        """Codes of float32[samples] at 16 kHz, from the cache or by running the tokenizer."""
        self.attach(tokenizer)
        fingerprint = fingerprint or tokenizer.fingerprint
        codes = self.get(fingerprint, wave)
        if codes is not None:
            self.hits += 1
            return codes
        self.misses += 1
        codes = np.asarray(tokenizer.encode(wave, SAMPLE_RATE), dtype=np.int64)
        self.put(fingerprint, wave, codes)
        return codes

    def prosody(self, wave: np.ndarray) -> np.ndarray:
        """float64[4] turn prosody of float32[samples] at 16 kHz, from the cache or measured."""
        from convmem.audio.relative_prosody import MARKS_PER_TURN, turn_prosody

        path = self.path(PROSODY_VERSION, self.key(PROSODY_VERSION, wave))
        found = self._load(path, lambda p: p.dtype == np.float64 and p.shape == (MARKS_PER_TURN,),
                           "measuring again")
        if found is not None:
            self.hits += 1
            return found
        self.misses += 1
        found = turn_prosody(wave)
        self._save(path, found)
        return found

    def describe(self, tokenizer: SpeechTokenizer, fingerprint: str) -> None:
        """Write which tokenizer filled `root/<fingerprint[:16]>` (for people browsing the cache)."""
        from convmem.fileio import atomic_write_json

        note = self.root / fingerprint[:16] / "tokenizer.json"
        if not note.exists():
            atomic_write_json(note, {"kind": tokenizer.kind, "fingerprint": fingerprint,
                                     "codebook_size": tokenizer.codebook_size, "frame_rate": tokenizer.frame_rate})
