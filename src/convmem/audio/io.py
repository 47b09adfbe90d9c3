"""Load, resample and write audio with soundfile + scipy (torchaudio does not work with our torch).

`load_audio` turns wav/flac/ogg of any sample rate and channel count into float32 mono 16 kHz,
and raises AudioError naming the file for anything unusable: missing, empty, corrupt,
truncated, or all-NaN.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from convmem.errors import AudioError

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class AudioInfo:
    sample_rate: int
    channels: int
    frames: int

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate


def audio_info(path: str | Path) -> AudioInfo:
    """Header facts of an audio file without decoding it."""
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: audio file not found")
    try:
        info = sf.info(str(path))
    except Exception as exc:  # soundfile raises LibsndfileError / RuntimeError variants
        raise AudioError(f"{path}: not a readable audio file ({_why(exc)})") from None
    if info.frames <= 0:
        raise AudioError(f"{path}: empty audio (0 frames)")
    if info.format == "WAV":
        _check_wav_complete(path)
    return AudioInfo(sample_rate=int(info.samplerate), channels=int(info.channels), frames=int(info.frames))


def load_audio(
    path: str | Path,
    sample_rate: int = SAMPLE_RATE,
    start: float | None = None,
    end: float | None = None,
) -> np.ndarray:
    """Read `path` (optionally only [start, end) seconds) as float32 mono at `sample_rate`.

    Returns:
        float32[samples]
    """
    import soundfile as sf

    path = Path(path)
    info = audio_info(path)
    first = 0 if start is None else max(0, int(round(start * info.sample_rate)))
    last = info.frames if end is None else min(info.frames, int(round(end * info.sample_rate)))
    if start is not None and first >= info.frames:
        raise AudioError(f"{path}: segment start {start:.3f} s is beyond the audio ({info.duration:.3f} s)")
    if last <= first:
        raise AudioError(f"{path}: empty segment [{start}, {end}) s")
    try:
        data, sr = sf.read(str(path), start=first, stop=last, dtype="float32", always_2d=True)
    except Exception as exc:
        raise AudioError(f"{path}: corrupt or truncated audio ({_why(exc)})") from None
    if data.shape[0] == 0:
        raise AudioError(f"{path}: empty audio (no samples could be decoded)")
    if data.shape[0] < (last - first) * 0.98:
        raise AudioError(
            f"{path}: truncated audio (header promises {last - first} frames, decoded {data.shape[0]})"
        )
    finite = np.isfinite(data)
    if not finite.any():
        raise AudioError(f"{path}: audio is all NaN/Inf")
    if not finite.all():
        data = np.where(finite, data, 0.0).astype(np.float32)
    mono = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    return resample(np.ascontiguousarray(mono, dtype=np.float32), int(sr), sample_rate)


def resample(wave: np.ndarray, orig_sr: int, target_sr: int = SAMPLE_RATE) -> np.ndarray:
    """Polyphase resampling (scipy), exact for rational ratios such as 48k→16k or 44.1k→16k.

    Args: wave float32[samples]. Returns: float32[round(samples * target_sr / orig_sr)].
    """
    if orig_sr == target_sr:
        return wave.astype(np.float32, copy=False)
    from scipy.signal import resample_poly

    ratio = Fraction(target_sr, orig_sr)
    out = resample_poly(wave.astype(np.float64), ratio.numerator, ratio.denominator)
    return out.astype(np.float32)


def write_wav(path: str | Path, wave: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Path:
    """Write float32 mono as 16-bit PCM wav, atomically (tmp file + rename)."""
    import soundfile as sf

    from convmem.fileio import atomic_open

    path = Path(path)
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1 or wave.size == 0:
        raise AudioError(f"{path}: refusing to write empty or multi-dimensional audio {wave.shape}")
    with atomic_open(path, "wb") as fh:
        sf.write(fh, np.clip(wave, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
    return path


def _check_wav_complete(path: Path) -> None:
    """libsndfile quietly shortens a truncated WAV; compare its data chunk's size with the file."""
    import struct

    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RF64") or head[8:12] != b"WAVE":
            return
        pos = 12
        while pos + 8 <= size:
            fh.seek(pos)
            chunk_id, chunk_size = struct.unpack("<4sI", fh.read(8))
            if chunk_id == b"data":
                if head[:4] == b"RIFF" and pos + 8 + chunk_size > size:
                    raise AudioError(
                        f"{path}: truncated audio (data chunk promises {chunk_size} bytes, "
                        f"file holds {size - pos - 8})"
                    )
                return
            pos += 8 + chunk_size + (chunk_size & 1)


def _why(exc: Exception) -> str:
    msg = str(exc).strip().splitlines()
    return msg[-1] if msg else type(exc).__name__
