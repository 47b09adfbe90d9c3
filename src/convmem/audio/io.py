"""Load, resample and write audio with soundfile + scipy (torchaudio does not work with our torch).

`load_audio` turns wav/flac/ogg of any sample rate and channel count into float32 mono 16 kHz,
and raises AudioError naming the file for anything unusable: missing, a directory, empty,
corrupt, truncated (audio/containers.py), an impossible sample rate, or all-NaN.
For audio that must not be held whole (an hour-long call, a live stream), `iter_file_blocks`
reads a file block by block and `StreamResampler` resamples chunk by chunk exactly as `resample`
would resample the whole.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from convmem.errors import AudioError

SAMPLE_RATE = 16000
MIN_RATE, MAX_RATE = 4000, 384000  # anything outside is not an audio sample rate


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

    from convmem.audio.containers import check_complete

    path = Path(path)
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, not an audio file")
    if not path.is_file():
        raise AudioError(f"{path}: audio file not found")
    try:
        info = sf.info(str(path))
    except Exception as exc:  # soundfile raises LibsndfileError / RuntimeError variants
        raise AudioError(f"{path}: not a readable audio file ({_why(exc)})") from None
    if info.frames <= 0:
        raise AudioError(f"{path}: empty audio (0 frames)")
    if not MIN_RATE <= info.samplerate <= MAX_RATE:
        raise AudioError(f"{path}: sample rate {info.samplerate} Hz is not an audio rate "
                         f"(expected {MIN_RATE}-{MAX_RATE} Hz)")
    check_complete(path, info.format)
    return AudioInfo(sample_rate=int(info.samplerate), channels=int(info.channels), frames=int(info.frames))


def load_audio(
    path: str | Path,
    sample_rate: int = SAMPLE_RATE,
    start: float | None = None,
    end: float | None = None,
    stats: dict | None = None,
) -> np.ndarray:
    """Read `path` (optionally only [start, end) seconds) as float32 mono at `sample_rate`.
    NaN/Inf samples are read as silence, counted in `stats["nonfinite"]` when given (frames).

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
        _count_nonfinite(stats, int((~finite.all(axis=1)).sum()))
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


def _why(exc: Exception) -> str:
    msg = str(exc).strip().splitlines()
    return msg[-1] if msg else type(exc).__name__


def _count_nonfinite(stats: dict | None, n: int) -> None:
    if stats is not None and n:
        stats["nonfinite"] = stats.get("nonfinite", 0) + n


def iter_file_blocks(path: Path, block_s: float = 30.0,
                     stats: dict | None = None) -> Iterator[tuple[np.ndarray, int, float]]:
    """(mono float32 block at the file's rate, rate, seconds) for consecutive blocks of `path`.
    Raises AudioError, after the last block, when not one sample of the file was a number;
    counts the frames read as silence for being NaN/Inf in `stats["nonfinite"]` when given."""
    import soundfile as sf

    any_finite = False
    try:
        with sf.SoundFile(str(path)) as fh:
            rate = int(fh.samplerate)
            size = max(1, int(block_s * rate))
            while True:
                data = fh.read(size, dtype="float32", always_2d=True)
                if data.shape[0] == 0:
                    break
                mono = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
                # as load_audio does: a few bad samples become silence rather than failing an hour
                finite = np.isfinite(mono)
                any_finite = any_finite or bool(finite.any())
                _count_nonfinite(stats, int(finite.size - finite.sum()))
                mono = np.where(finite, mono, 0.0).astype(np.float32)
                yield mono, rate, mono.size / rate
    except (RuntimeError, sf.LibsndfileError) as exc:
        raise AudioError(f"{path}: corrupt or truncated audio while reading ({exc})") from None
    if not any_finite:
        raise AudioError(f"{path}: audio is all NaN/Inf")


class StreamResampler:
    """Resample a stream chunk by chunk to 16 kHz with the same polyphase filter as `resample`.

    scipy has no stateful polyphase resampler, so this is overlap-save around `resample_poly`:
    each call filters [left context | new samples | held-back tail] and keeps only outputs whose
    filter support lies inside real input, holding back `pad` samples of look-ahead. Aligned to
    whole `down`-sample units, the output equals a one-shot `resample_poly` of the whole stream
    (up to float rounding) instead of clicking at every chunk edge.
    """

    def __init__(self, orig_sr: int, target_sr: int = SAMPLE_RATE):
        ratio = Fraction(int(target_sr), int(orig_sr))
        self.up, self.down = ratio.numerator, ratio.denominator
        self.identity = self.up == self.down == 1
        # resample_poly's default filter reaches 10 * max(up, down) upsampled samples each side
        reach = math.ceil(10 * max(self.up, self.down) / self.up) + 1
        self.pad = math.ceil(reach / self.down) * self.down
        self._left = np.zeros(0, np.float32)
        self._pending = np.zeros(0, np.float32)

    def push(self, chunk: np.ndarray) -> np.ndarray:
        """float32[n] at orig_sr -> float32[m] at 16 kHz (m may be 0 while look-ahead builds up)."""
        if self.identity:
            return chunk.astype(np.float32, copy=False)
        self._pending = np.concatenate([self._pending, chunk.astype(np.float32, copy=False)])
        ready = (self._pending.size - self.pad) // self.down * self.down
        if ready <= 0:
            return np.zeros(0, np.float32)
        return self._emit(ready, final=False)

    def flush(self) -> np.ndarray:
        """The rest of the stream (zero-padded at its true end, as the one-shot filter does)."""
        if self.identity or self._pending.size == 0:
            return np.zeros(0, np.float32)
        return self._emit(self._pending.size, final=True)

    def _emit(self, ready: int, final: bool) -> np.ndarray:
        from scipy.signal import resample_poly

        body = self._pending[: ready if final else ready + self.pad]
        x = np.concatenate([self._left, body]).astype(np.float64)
        y = resample_poly(x, self.up, self.down)
        skip = self._left.size * self.up // self.down
        n_out = math.ceil(ready * self.up / self.down) if final else ready * self.up // self.down
        out = y[skip: skip + n_out].astype(np.float32)
        done = self._pending[:ready]
        self._left = np.concatenate([self._left, done])[-self.pad:] if not final else self._left
        self._pending = self._pending[ready:]
        return out
