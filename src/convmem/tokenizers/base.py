"""The SpeechTokenizer protocol, the 25 Hz frame rule, and the registry of tokenizer kinds.

Every tokenizer turns float32 mono audio into int64 codes at `FRAME_RATE` (25 Hz), and every
one obeys the same frame-count rule, `n_frames(samples)`:

    frames = max(1, floor(samples / 640 + 1/2))      at 16 kHz (640 samples = 40 ms)

i.e. the number of 40 ms frames rounded half-up, so 10 s gives exactly 250 codes. Audio shorter
than half a frame (< 20 ms) still gives one code rather than none, because an utterance with no
codes would silently vanish from the token stream; empty audio (0 samples) is an AudioError.

A tokenizer directory holds `tokenizer.json` (`{"kind", "config", ...}`) plus whatever the kind
learned; `load_tokenizer(dir)` reads it back whatever the kind.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from convmem.errors import AudioError, ConfigError

SAMPLE_RATE = 16000
FRAME_RATE = 25.0
HOP_SAMPLES = int(SAMPLE_RATE / FRAME_RATE)  # 640 samples = one 25 Hz code
MANIFEST_NAME = "tokenizer.json"

# kind -> "module:Class"; imported lazily so `convmem --help` never pays for torch/onnxruntime.
KINDS: dict[str, str] = {
    "kmeans": "convmem.tokenizers.kmeans:LogMelKMeansTokenizer",
    "kmeans-f0": "convmem.tokenizers.pitch_kmeans:PitchKMeansTokenizer",
    "ctc-kmeans": "convmem.tokenizers.ctc_kmeans:CTCKMeansTokenizer",
    "ssl-kmeans": "convmem.tokenizers.ssl_kmeans:SSLKMeansTokenizer",
    "whisper-kmeans": "convmem.tokenizers.whisper_kmeans:WhisperKMeansTokenizer",
    "s3": "convmem.tokenizers.s3:S3Tokenizer",
}


@runtime_checkable
class SpeechTokenizer(Protocol):
    """What every tokenizer offers (DESIGN.md). Trained kinds also have `fit(waveforms)`."""

    kind: str
    frame_rate: float
    codebook_size: int

    @property
    def fingerprint(self) -> str:
        """sha256 hex of config + learned parameters: equal fingerprints give equal codes."""
        ...

    def encode(self, waveform: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        """float32[samples] at `sample_rate` -> int64[n_frames(samples at 16 kHz)] in [0, codebook_size)."""
        ...

    def save(self, directory: str | Path) -> Path:
        """Write `tokenizer.json` (+ learned parameters) into `directory`; returns the directory."""
        ...


def offers_frames(tokenizer) -> bool:
    """Whether a tokenizer (or tokenizer class) offers the continuous frames its codes are assigned
    from: the optional protocol methods `frames(waveform, sample_rate) -> float32[n_frames, D]` and
    `frames_batch(waveforms, sample_rate) -> [float32[n_frames_i, D]]`, one frame per code (what
    an SLM with `slm.audio_input=frames` reads)."""
    return callable(getattr(tokenizer, "frames_batch", None)) and callable(getattr(tokenizer, "frames", None))


def require_frames(kind: str) -> None:
    """ConfigError unless tokenizer `kind` offers frames (`offers_frames`), naming those that do."""
    if not offers_frames(_resolve(kind)):
        able = [k for k in KINDS if offers_frames(_resolve(k))]
        raise ConfigError(f"slm.audio_input=frames needs a tokenizer that offers continuous frames; "
                          f"{kind!r} offers codes only (kinds with frames: {', '.join(able)})")


def n_frames(samples: int) -> int:
    """Codes for `samples` samples at 16 kHz: 40 ms frames rounded half-up, at least 1."""
    if samples <= 0:
        raise AudioError("empty audio: 0 samples cannot be tokenized")
    return max(1, math.floor(samples / HOP_SAMPLES + 0.5))


def prepare_waveform(waveform: np.ndarray, sample_rate: int) -> np.ndarray:
    """Validate and bring audio to float32[samples] mono at 16 kHz (resampling if needed)."""
    from convmem.audio.io import resample

    wave = np.asarray(waveform)
    if wave.ndim != 1:
        raise AudioError(f"waveform must be 1-D mono float32[samples], got shape {wave.shape}")
    if wave.size == 0:
        raise AudioError("empty audio: 0 samples cannot be tokenized")
    if not np.issubdtype(wave.dtype, np.floating):
        raise AudioError(f"waveform must be floating point in [-1, 1], got dtype {wave.dtype}")
    if not np.isfinite(wave).all():
        raise AudioError("waveform contains NaN or Inf samples")
    if int(sample_rate) <= 0:
        raise AudioError(f"invalid sample rate {sample_rate}")
    return resample(wave.astype(np.float32, copy=False), int(sample_rate), SAMPLE_RATE)


def fit_to_frames(wave: np.ndarray, frames: int, extra: int = 0) -> np.ndarray:
    """Zero-pad or trim float32 audio to `frames * 640 + extra` samples.

    Tokenizers run on this exact length so that their native framing yields exactly `frames`
    codes; the trimmed tail is always under half a frame (see `n_frames`).
    """
    target = frames * HOP_SAMPLES + extra
    if wave.size >= target:
        return wave[:target]
    return np.pad(wave, (0, target - wave.size))


def config_hash(config: dict, *arrays: np.ndarray | bytes | str) -> str:
    """sha256 hex of a JSON config plus learned parameters (arrays, raw bytes or digests)."""
    h = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    for a in arrays:
        if isinstance(a, np.ndarray):
            a = np.ascontiguousarray(a)
            h.update(f"{a.dtype.str}{a.shape}".encode())
            h.update(a.tobytes())
        elif isinstance(a, str):
            h.update(a.encode())
        else:
            h.update(a)
    return h.hexdigest()


def file_digest(path: Path, chunk: int = 1 << 22) -> str:
    """sha256 hex of a file's bytes (model weights: so a swapped file changes the fingerprint)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def iter_waveforms(waveforms: Iterable[np.ndarray], sample_rate: int) -> Iterator[np.ndarray]:
    """Validate/resample each training waveform; shared by the `fit` methods."""
    for wave in waveforms:
        yield prepare_waveform(wave, sample_rate)


def _resolve(kind: str) -> type:
    if kind not in KINDS:
        raise ConfigError(f"unknown tokenizer kind {kind!r}; known kinds: {', '.join(KINDS)}")
    module, cls = KINDS[kind].split(":")
    return getattr(importlib.import_module(module), cls)


def build_tokenizer(kind: str, **config) -> SpeechTokenizer:
    """A new tokenizer of `kind` (any key of `KINDS`, e.g. "kmeans", "whisper-kmeans") from config keys.

    Unknown keys raise ConfigError naming the key. Trained kinds must be `fit` before `encode`.
    """
    return _resolve(kind).from_config(config)


def load_tokenizer(directory: str | Path) -> SpeechTokenizer:
    """Load a saved tokenizer directory (any kind), or an S3 `.onnx` file / a directory holding one."""
    path = Path(directory)
    if path.suffix == ".onnx" or (path.is_dir() and not (path / MANIFEST_NAME).exists()
                                  and any(path.glob("speech_tokenizer_v*.onnx"))):
        from convmem.tokenizers.s3 import S3Tokenizer

        return S3Tokenizer.from_path(path)
    return _resolve(_read_json(path).get("kind", "<missing>")).load(path)


def _read_json(directory: Path) -> dict:
    manifest = Path(directory) / MANIFEST_NAME
    if not manifest.is_file():
        raise ConfigError(f"{directory}: not a tokenizer directory (no {MANIFEST_NAME})")
    try:
        meta = json.loads(manifest.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{manifest}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(meta, dict):
        raise ConfigError(f"{manifest}: expected a JSON object")
    return meta


def read_tokenizer_json(directory: Path, kind: str) -> dict:
    """`tokenizer.json` of `directory`, checked to be of `kind` and to hold a "config" object."""
    manifest = Path(directory) / MANIFEST_NAME
    meta = _read_json(directory)
    if meta.get("kind") != kind:
        raise ConfigError(f"{manifest}: field 'kind' is {meta.get('kind')!r}, expected {kind!r}")
    config = meta.get("config")
    if not isinstance(config, dict):
        raise ConfigError(f"{manifest}: field 'config' must be an object")
    return meta


def write_tokenizer_json(directory: Path, kind: str, config: dict, fingerprint: str, **extra) -> None:
    """Write `tokenizer.json` atomically (extra keys: facts checked again at load)."""
    from convmem.fileio import atomic_write_json

    atomic_write_json(Path(directory) / MANIFEST_NAME,
                      {"kind": kind, "config": config, "fingerprint": fingerprint, **extra})
