"""Voice-activity segmentation of recordings into utterances with silero-vad, offline and streaming.

silero-vad (PyPI `silero-vad`) ships its weights in the wheel; `load_silero_vad()` reads them
from there, so nothing is downloaded. Its `read_audio` needs torchaudio, which does not work with
our torch, so we always feed it our own float32 16 kHz audio. The same weights run as ONNX
(onnxruntime, when installed: ~1.8x faster per 32 ms frame, measured 0.39 vs 0.71 ms on this
project's 2-core machine, and VAD is most of `predict`'s time) or as TorchScript (torch only);
`backend="auto"` takes ONNX when it can. Both give the same segments (tested).

Two entry points, one configuration (`VADConfig`):

- `speech_segments(wave)`: whole audio in memory, via silero's `get_speech_timestamps` (long
  speech is split at silero's own `max_speech_duration_s` rule: the longest pause inside it).
- `StreamingSegmenter`: audio pushed chunk by chunk (a live microphone, or a file read block by
  block), via silero's `VADIterator`; finished utterances come out as soon as the silence after
  them is long enough. It holds at most one open utterance of audio (<= `max_utterance_s` plus
  a pushed chunk), so memory is constant for any stream length. Speech longer than
  `max_utterance_s` is cut at the frame of lowest speech probability in it (the least speech-like
  moment, silero's own signal), keeping both parts at least `min_utterance_s` long.

Defaults are general rather than fitted to one corpus: utterances of 0.5-15 s (shorter blips such
as clicks and coughs are dropped; 15 s keeps an utterance well inside a 1 k-token SLM window at
25 Hz), a 0.3 s pause ends an utterance (shorter pauses are within-sentence), silero's own 0.5
threshold and 30 ms padding.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from convmem.audio.io import MAX_RATE, MIN_RATE
from convmem.errors import AudioError, ConfigError

SAMPLE_RATE = 16000
FRAME = 512  # silero's window at 16 kHz (32 ms)


@dataclass(frozen=True)
class VADConfig:
    """Segmentation settings (seconds); see the module doc for why these defaults."""

    threshold: float = 0.5
    min_utterance_s: float = 0.5
    max_utterance_s: float = 15.0
    min_silence_s: float = 0.3
    speech_pad_s: float = 0.03
    backend: str = "auto"  # "onnx" | "jit" | "auto" (onnx when onnxruntime is installed)

    def __post_init__(self):
        if self.backend not in ("auto", "onnx", "jit"):
            raise ConfigError(f"vad.backend must be auto, onnx or jit, got {self.backend!r}")
        if not 0.0 < self.threshold < 1.0:
            raise ConfigError(f"vad.threshold must be in (0, 1), got {self.threshold}")
        if self.min_utterance_s < 0 or self.min_silence_s <= 0 or self.speech_pad_s < 0:
            raise ConfigError("vad: min_utterance_s and speech_pad_s must be >= 0 and min_silence_s > 0, got "
                              f"{self.min_utterance_s}, {self.speech_pad_s}, {self.min_silence_s}")
        if self.max_utterance_s < max(2 * self.min_utterance_s, 1.0):
            raise ConfigError(f"vad.max_utterance_s ({self.max_utterance_s}) must be >= 1 s and >= twice "
                              f"min_utterance_s ({self.min_utterance_s})")


@dataclass(frozen=True)
class SpeechSegment:
    """One detected utterance: [start, end) seconds in the stream and its 16 kHz audio float32[n]."""

    start: float
    end: float
    wave: np.ndarray

    @property
    def duration(self) -> float:
        return self.end - self.start


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """silero runs one 32 ms frame at a time: more intra-op threads only add contention (measured
    ~30x slower with 2 threads on a busy 2-core machine), so use one and restore the caller's."""
    import torch

    before = torch.get_num_threads()
    if before != 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if before != 1:
            torch.set_num_threads(before)


def resolve_backend(backend: str = "auto") -> str:
    """"onnx" or "jit": what `backend` means here ("auto": onnx when onnxruntime is importable)."""
    if backend != "auto":
        return backend
    import importlib.util

    return "onnx" if importlib.util.find_spec("onnxruntime") is not None else "jit"


def load_vad_model(backend: str = "auto"):
    """A fresh silero VAD (its own recurrent state) from the installed wheel, offline. Importing
    `silero_vad` sets torch to one thread as a side effect; the caller's setting is restored."""
    import torch

    backend = resolve_backend(backend)

    before = torch.get_num_threads()
    try:
        from silero_vad import load_silero_vad
    except ImportError:  # pragma: no cover - depends on the environment
        raise ConfigError("voice-activity segmentation needs the `silero-vad` package "
                          "(pip install silero-vad); or give segments with --segments") from None
    finally:
        torch.set_num_threads(before)
    import warnings

    if backend == "onnx":
        from convmem.onnx_runtime import onnxruntime

        try:
            onnxruntime()  # imported here first, telemetry off: silero's own import then reuses it
        except ImportError:
            pass  # silero's loader below names the missing package
    with warnings.catch_warnings():  # silero's loader uses APIs torch/importlib now call deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return load_silero_vad(onnx=backend == "onnx")
        except ImportError as exc:
            raise ConfigError(f"vad backend {backend!r} needs {exc.name} (pip install {exc.name}); "
                              "or use backend 'jit'") from None


def check_wave(wave, sample_rate, what: str = "audio", max_seconds: float | None = None) -> np.ndarray:
    """Validate caller audio: 1-D floating point, finite, non-empty, a sane rate, not too long.

    Returns float32[n] (same rate). Raises AudioError naming `what` and the problem.
    """
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) \
            or not MIN_RATE <= int(sample_rate) <= MAX_RATE:
        raise AudioError(f"{what}: sample rate must be an integer in [{MIN_RATE}, {MAX_RATE}] Hz, got {sample_rate!r}")
    arr = np.asarray(wave)
    if arr.ndim != 1:
        raise AudioError(f"{what}: expected mono float32[samples], got shape {arr.shape}")
    if arr.size == 0:
        raise AudioError(f"{what}: empty (0 samples)")
    if not np.issubdtype(arr.dtype, np.floating):
        raise AudioError(f"{what}: expected floating-point samples in [-1, 1], got dtype {arr.dtype} "
                         "(divide 16-bit PCM by 32768)")
    if not np.isfinite(arr).all():
        raise AudioError(f"{what}: contains NaN or Inf samples (first at index "
                         f"{int(np.flatnonzero(~np.isfinite(arr))[0])})")
    if max_seconds is not None and arr.size > max_seconds * int(sample_rate):
        raise AudioError(f"{what}: {arr.size / int(sample_rate):.1f} s in one chunk is more than the "
                         f"{max_seconds:g} s allowed; send it in smaller chunks")
    return arr.astype(np.float32, copy=False)


def speech_segments(wave: np.ndarray, sample_rate: int = SAMPLE_RATE, config: VADConfig = VADConfig(),
                    model=None) -> list[tuple[float, float]]:
    """Utterances in audio held in memory, with silero's `get_speech_timestamps`.

    Args: wave float32[samples] at `sample_rate` (resampled to 16 kHz here).
    Returns: [(start, end)] seconds, in time order, non-overlapping.
    """
    import torch
    from silero_vad import get_speech_timestamps

    from convmem.audio.io import resample

    wave = resample(check_wave(wave, sample_rate), int(sample_rate), SAMPLE_RATE)
    model = model if model is not None else load_vad_model(config.backend)
    with _one_thread():
        stamps = get_speech_timestamps(
            torch.from_numpy(wave), model, threshold=config.threshold, sampling_rate=SAMPLE_RATE,
            min_speech_duration_ms=int(config.min_utterance_s * 1000), max_speech_duration_s=config.max_utterance_s,
            min_silence_duration_ms=int(config.min_silence_s * 1000), speech_pad_ms=int(config.speech_pad_s * 1000))
    return [(s["start"] / SAMPLE_RATE, s["end"] / SAMPLE_RATE) for s in stamps]


class StreamingSegmenter:
    """Online utterance segmentation of a 16 kHz stream (see module doc).

    `push(chunk)` returns the utterances that ended inside the audio pushed so far; `flush()` ends
    the stream and returns an utterance still open. Times are seconds since the first sample.
    """

    def __init__(self, config: VADConfig = VADConfig(), model=None):
        from silero_vad import VADIterator

        self.config = config
        self._model = model if model is not None else load_vad_model(config.backend)
        self._probe = _ProbRecorder(self._model)
        self._iter = VADIterator(self._probe, threshold=config.threshold, sampling_rate=SAMPLE_RATE,
                                 min_silence_duration_ms=int(config.min_silence_s * 1000),
                                 speech_pad_ms=int(config.speech_pad_s * 1000))
        self._min = int(round(config.min_utterance_s * SAMPLE_RATE))
        self._max = int(round(config.max_utterance_s * SAMPLE_RATE))
        self._pad = int(round(config.speech_pad_s * SAMPLE_RATE))
        self._buf = np.zeros(0, np.float32)  # samples [_buf_start, _buf_start + len)
        self._buf_start = 0
        self._consumed = 0  # samples the VAD has read (whole frames)
        self._origin = 0  # stream sample where VADIterator's own count restarted (after flush)
        self._open: int | None = None  # start sample of the open utterance
        self._last_end = 0  # utterances never overlap
        self._probs: list[tuple[int, float]] = []  # (frame start, prob) inside the open utterance
        self.dropped_short = 0  # speech bursts shorter than min_utterance_s, not returned

    @property
    def position(self) -> float:
        """Seconds of audio pushed so far."""
        return (self._buf_start + self._buf.size) / SAMPLE_RATE

    def push(self, chunk: np.ndarray) -> list[SpeechSegment]:
        """Feed float32[n] 16 kHz samples; returns utterances finished so far, in time order."""
        self._buf = np.concatenate([self._buf, np.asarray(chunk, np.float32)])
        out: list[SpeechSegment] = []
        end_of_data = self._buf_start + self._buf.size
        import torch

        with _one_thread():
            while self._consumed + FRAME <= end_of_data:
                frame = self._slice(self._consumed, self._consumed + FRAME)
                event = self._iter(torch.from_numpy(frame))
                prob_start = self._consumed
                self._consumed += FRAME
                if event and "start" in event:
                    self._open = max(self._origin + int(event["start"]), self._last_end)
                    self._probs = []
                if self._open is not None:
                    self._probs.append((prob_start, self._probe.last))
                if event and "end" in event and self._open is not None:
                    self._close(min(self._origin + int(event["end"]), self._consumed), out)
                elif self._open is not None and self._consumed - self._open >= self._max:
                    self._cut_long(out)
        self._trim()
        return out

    def flush(self) -> list[SpeechSegment]:
        """End of stream: close the open utterance at the last sample (if long enough) and reset
        the VAD; audio pushed afterwards is a new stream whose times continue from here."""
        out: list[SpeechSegment] = []
        if self._open is not None:
            self._close(self._buf_start + self._buf.size, out)
        self._iter.reset_states()
        self._buf_start += self._buf.size
        self._buf = np.zeros(0, np.float32)
        self._consumed = self._origin = self._last_end = self._buf_start
        return out

    # -- internals ---------------------------------------------------------------------------

    def _slice(self, a: int, b: int) -> np.ndarray:
        return self._buf[a - self._buf_start: b - self._buf_start]

    def _close(self, end: int, out: list[SpeechSegment]) -> None:
        start, self._open, self._probs = self._open, None, []
        if end - start < self._min:
            self.dropped_short += 1
            return
        out.append(SpeechSegment(start / SAMPLE_RATE, end / SAMPLE_RATE, self._slice(start, end).copy()))
        self._last_end = end

    def _cut_long(self, out: list[SpeechSegment]) -> None:
        """Split the open utterance at its least speech-like frame, both parts >= min length."""
        start = self._open
        lo, hi = start + max(self._min, FRAME), self._consumed - max(self._min, FRAME)
        inside = [(p, s) for s, p in self._probs if lo <= s <= hi]
        cut = min(inside)[1] if inside else self._consumed  # min prob; earliest on ties
        out.append(SpeechSegment(start / SAMPLE_RATE, cut / SAMPLE_RATE, self._slice(start, cut).copy()))
        self._last_end = cut
        self._open = cut
        self._probs = [(s, p) for s, p in self._probs if s >= cut]

    def _trim(self) -> None:
        """Drop audio no utterance can still need: before the open start, or before the pre-roll
        (padding + one frame) that a starting utterance reaches back to."""
        keep = self._open if self._open is not None else self._consumed - self._pad - 2 * FRAME
        keep = max(self._buf_start, min(keep, self._consumed))
        if keep > self._buf_start:
            self._buf = self._buf[keep - self._buf_start:].copy()
            self._buf_start = keep


class _ProbRecorder:
    """Wraps the silero model so the segmenter sees each frame's speech probability, which
    `VADIterator` uses but does not return (needed to cut over-long speech)."""

    def __init__(self, model):
        self.model = model
        self.last = 0.0

    def __call__(self, x, sr):
        out = self.model(x, sr)
        self.last = float(out.item())
        return out

    def reset_states(self):
        self.model.reset_states()
