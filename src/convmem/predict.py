"""Emotion timelines of real recordings of any length, and the live-session API the service wraps.

    predictor = Predictor.load("runs/x/final_model", memory="dpm")
    timeline = predictor.predict("meeting.wav")            # or a float32 array + sample_rate
    timeline.to_json("meeting.timeline.json"); timeline.plot("meeting.png")

    session = predictor.open_session("caller-42")          # live: audio chunks in, utterances out
    for chunk in microphone: for u in session.push_audio(chunk, 16000): show(u)
    session.flush(); session.close()

A recording streams through the memory utterance by utterance (`ConversationEngine.open`): the
file is read in blocks, segmented online by silero-vad (audio/vad.py) or cut at given segments
(audio/segments.py), each utterance is tokenized and pushed, and then dropped. Memory is constant
in the recording's length: one block, one open utterance, and the memory's bounded state; only
the small per-utterance results accumulate. No gold label is read anywhere here.
"""

from __future__ import annotations

import csv
import io
import math
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from convmem.audio.io import StreamResampler, iter_file_blocks
from convmem.audio.segments import TimeSegment
from convmem.audio.vad import (
    SAMPLE_RATE,
    StreamingSegmenter,
    VADConfig,
    check_wave,
    resolve_backend,
)
from convmem.errors import AudioError, ConvmemError

BLOCK_SECONDS = 30.0  # blocks read or sliced at once: bounds memory, amortises VAD/read overhead
MAX_CHUNK_SECONDS = 60.0  # one live push_audio call
MAX_UTTERANCE_SECONDS = 120.0  # one push_utterance call (the SLM truncates long ones anyway)
# Shortest utterance classified: 2.5 frames of the 25 Hz codes. Shorter pieces (a 4-sample
# "utterance") carry no emotion, only a guess from the memory; they are refused in push_utterance
# and skipped (counted in dropped_short) when a segments file lists them.
MIN_UTTERANCE_SECONDS = 0.1
SILENT_PEAK = 10 ** (-80 / 20)  # a recording whose loudest sample is under -80 dBFS is silence


@dataclass
class UtteranceEmotion:
    """One utterance's prediction: [start, end) seconds, speaker if known, label and probabilities."""

    start: float
    end: float
    speaker: str | None
    emotion: str
    probs: dict[str, float]
    text: str | None = None  # the words (Whisper), with --transcribe

    def to_json(self) -> dict:
        out = {"start": round(self.start, 3), "end": round(self.end, 3), "speaker": self.speaker,
               "emotion": self.emotion, "probs": {k: round(v, 5) for k, v in self.probs.items()}}
        if self.text is not None:
            out["text"] = self.text
        return out


@dataclass
class Timeline:
    """Per-utterance emotions of one recording, in time order."""

    utterances: list[UtteranceEmotion]
    labels: tuple[str, ...]
    duration: float
    memory: str
    model: str
    audio: str | None = None
    segmentation: str = "vad"  # "vad" or the segments file
    dropped_short: int = 0  # speech bursts shorter than the minimum utterance, not predicted
    info: dict = field(default_factory=dict)
    # why a timeline is empty or suspect (silent, too short, no speech), each naming the recording
    warnings: list[str] = field(default_factory=list)

    def emotion_counts(self) -> dict[str, int]:
        counts = {k: 0 for k in self.labels}
        for u in self.utterances:
            counts[u.emotion] += 1
        return counts

    def to_dict(self) -> dict:
        return {"audio": self.audio, "model": self.model, "memory": self.memory,
                "segmentation": self.segmentation, "duration_s": round(self.duration, 3),
                "labels": list(self.labels), "dropped_short": self.dropped_short,
                "emotion_counts": self.emotion_counts(), **self.info, "warnings": list(self.warnings),
                "utterances": [u.to_json() for u in self.utterances]}

    def to_json(self, path: str | Path) -> Path:
        """Write the timeline as JSON, atomically."""
        from convmem.fileio import atomic_write_json

        atomic_write_json(path, self.to_dict())
        return Path(path)

    def to_csv(self, path: str | Path) -> Path:
        """Write `start,end,speaker,emotion,p_<label>...[,text]` rows, atomically."""
        from convmem.fileio import atomic_write_text

        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        texts = any(u.text is not None for u in self.utterances)
        w.writerow(["start", "end", "speaker", "emotion", *(f"p_{k}" for k in self.labels), *(["text"] if texts else [])])
        for u in self.utterances:
            w.writerow([f"{u.start:.3f}", f"{u.end:.3f}", u.speaker or "", u.emotion,
                        *(f"{u.probs[k]:.5f}" for k in self.labels), *([u.text or ""] if texts else [])])
        atomic_write_text(path, buf.getvalue())
        return Path(path)

    def plot(self, path: str | Path) -> Path:
        """PNG timeline (see timeline_plot.py)."""
        from convmem.timeline_plot import plot_timeline

        return plot_timeline(self, path)


class Predictor:
    """A model directory loaded once, then applied to any number of recordings or live sessions.

    Thread-safe: sessions on different threads may be driven at once. Every model call holds one
    lock, because a DPM or MAL memory works by hooking the single shared model for the duration of
    its call (the service serialises the same way); VAD, resampling and bookkeeping run outside it.
    """

    def __init__(self, bundle, memory: str = "dpm", vad: VADConfig = VADConfig(), speakers="none",
                 transcriber=None):
        from convmem.speakers.options import parse_speakers

        self.bundle = bundle
        # live sessions: "none" (one shared speaker), "auto" or N (online assignment, speakers/cluster.py)
        self.speakers = parse_speakers(speakers)
        self.transcriber = transcriber  # None, or wave16k -> words (speakers/transcribe.py)
        self.model_lock = threading.RLock()
        self.memory = memory
        self.vad = vad
        self.labels = tuple(bundle.labels)
        self.engine = bundle.engine(memory)  # ConfigError for a method this model does not offer
        from convmem.memory import registry

        self._grad_mode = registry.get(memory).grad_mode

    @classmethod
    def load(cls, model_dir: str | Path, memory: str = "dpm", device: str = "cpu",
             vad: VADConfig = VADConfig(), speakers="none", transcriber=None) -> "Predictor":
        """Load `model_dir` (a `convmem run` final model) for `memory` (dpm|mal|window|none|...);
        `speakers`, `transcriber`: see __init__."""
        from convmem.bundle import load_bundle

        return cls(load_bundle(model_dir, device=device), memory=memory, vad=vad, speakers=speakers,
                   transcriber=transcriber)

    def open_session(self, key: str = "live") -> "LiveSession":
        """A fresh conversation memory; `key` seeds it (same key + same audio = same output)."""
        return LiveSession(self, key)

    def predict(self, audio: str | Path | np.ndarray, sample_rate: int = SAMPLE_RATE,
                segments: Sequence[TimeSegment] | str | Path | None = None, progress: bool = True,
                on_utterance: Callable[[UtteranceEmotion], None] | None = None, key: str | None = None,
                speakers="none") -> Timeline:
        """Emotion timeline of a whole recording, streamed through the memory.

        Args:
            audio: a wav/flac/ogg path (read block by block) or float32[samples] at `sample_rate`.
            segments: utterance spans (TimeSegment list or a segments file); None = silero-vad.
            progress: tqdm bar over audio seconds, with ETA.
            on_utterance: called with each result as soon as it is known.
            key: seeds the conversation's memory (default: the file name, or "array").
            speakers: without `segments`: "none" (one speaker), "auto" (estimated) or an int: the
                VAD utterances are diarised first (speakers/diarise.py) and carry their labels.
        """
        from tqdm import tqdm

        from convmem.audio.io import audio_info

        if isinstance(audio, (str, Path)):
            path = Path(audio)
            info = audio_info(path)
            duration, name, default_key = info.duration, str(path), path.name
        else:
            path = None
            wave = check_wave(audio, sample_rate, "audio array")
            duration, name, default_key = wave.size / int(sample_rate), None, "array"
        seg_name = "vad"
        from convmem.speakers.options import parse_speakers

        speakers = parse_speakers(speakers)
        if segments is None and speakers != "none":
            from convmem.speakers.diarise import diarise

            stats: dict = {}
            found = diarise(audio if path is None else path, sample_rate if path is None else SAMPLE_RATE,
                            n_speakers=None if speakers == "auto" else speakers, vad=self.vad, stats=stats)
            if found:  # no speech at all: the VAD path below says why
                segments, seg_name = found, f"vad+diarisation({speakers})"
        if isinstance(segments, (str, Path)):
            from convmem.audio.segments import read_segments

            seg_name = str(segments)
            segments = read_segments(segments, audio_stem=path.stem if path is not None else None)
        elif segments is not None and seg_name == "vad":
            seg_name = "given"
        if segments is not None:
            from convmem.audio.segments import check_segments

            segments = sorted(segments, key=lambda s: (s.start, s.end))
            check_segments(segments, duration, name or "audio array")
        # a recording's blocks and segments are this method's own: no live-client size limits
        session = LiveSession(self, key if key is not None else default_key, limits=False)
        results: list[UtteranceEmotion] = []
        peak = 0.0
        read: dict = {}  # what reading the file met: NaN/Inf samples read as silence
        # with diarisation, VAD's dropped blips were counted in its pass
        short_segments = stats.get("dropped_short", 0) if segments is not None and seg_name.startswith("vad+") else 0

        def keep(found: list[UtteranceEmotion]) -> None:
            for u in found:
                results.append(u)
                if on_utterance is not None:
                    on_utterance(u)

        bar = tqdm(total=duration, unit="s", desc="predict", disable=not progress, dynamic_ncols=True,
                   bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s audio [{elapsed}<{remaining}, {rate_fmt}]")
        try:
            if segments is not None:
                for seg in segments:
                    if path is not None:
                        from convmem.audio.io import load_audio

                        piece, rate = load_audio(path, SAMPLE_RATE, seg.start, seg.end), SAMPLE_RATE
                    else:
                        piece = wave[int(seg.start * sample_rate): int(math.ceil(seg.end * sample_rate))]
                        rate = sample_rate
                    peak = max(peak, float(np.abs(piece).max(initial=0.0)))
                    if piece.size < MIN_UTTERANCE_SECONDS * rate:
                        short_segments += 1
                        continue
                    try:
                        keep([session.push_utterance(piece, rate, start=seg.start, end=seg.end,
                                                     speaker=seg.speaker)])
                    except AudioError as exc:
                        raise AudioError(f"{seg.where or f'segment {seg.start}-{seg.end} s'}: {exc}") from None
                    bar.update(max(0.0, min(seg.end, duration) - bar.n))
            else:
                blocks = iter_file_blocks(path, BLOCK_SECONDS, stats=read) if path is not None else _array_blocks(wave, int(sample_rate))
                for block, rate, seconds in blocks:
                    peak = max(peak, float(np.abs(block).max(initial=0.0)))
                    keep(session.push_audio(block, rate))
                    bar.update(seconds)
                keep(session.flush())
            bar.update(duration - bar.n)  # float sums of block lengths stop a hair short
        finally:
            bar.close()
            dropped = session.dropped_short + short_segments
            session.close()
        vad_used = segments is None or seg_name.startswith("vad+")
        info = {"vad": {**asdict(self.vad), "backend": resolve_backend(self.vad.backend)}} if vad_used else {}
        if segments is not None:
            info["speakers"] = sorted({s.speaker for s in segments if s.speaker is not None})
        shortest = self.vad.min_utterance_s if vad_used else MIN_UTTERANCE_SECONDS
        warnings = _empty_timeline_warnings(name or "audio array", duration, peak, len(results), dropped, shortest)
        if path is not None and segments is not None:
            # only the segments were read: count the whole file's bad samples (a quick pass)
            read = {}
            for _ in iter_file_blocks(path, BLOCK_SECONDS, stats=read):
                pass
        if read.get("nonfinite"):
            warnings.append(f"{name}: {read['nonfinite']} sample(s) were NaN or infinite and were read as silence "
                            "(the recording is damaged there)")
        return Timeline(results, self.labels, duration, self.memory, str(self.bundle.path), name, seg_name,
                        dropped, info, warnings)

    # -- used by LiveSession -----------------------------------------------------------------

    def _segmenter(self) -> StreamingSegmenter:
        # a fresh VAD model (~0.1 s to load): every stream needs its own recurrent state
        return StreamingSegmenter(self.vad)

    def _classify(self, conv, encoder, wave16k: np.ndarray, speaker: str | None = None) -> tuple[np.ndarray, str | None]:
        """Encode one utterance with the conversation's `encoder` (tokenizers/utterance_encoder.py:
        its marks against `speaker`'s earlier turns, its speaker assigned online when not given)
        and push it; returns (probabilities float32[E], its speaker)."""
        import torch

        encoded = encoder.encode(wave16k, speaker)
        with self.model_lock, self._grad_mode():
            logits = conv.push(encoded.model_input(self.bundle.vocab)).logits
        probs = torch.softmax(torch.from_numpy(logits).double(), -1).numpy()
        if not np.isfinite(probs).all():
            # a timeline never holds NaN: it would be invalid JSON and a silent wrong answer
            raise ConvmemError(f"{self.bundle.path}: the model gave non-finite emotion scores (NaN or Inf); "
                               "its weights are damaged or training diverged: retrain it")
        return probs, encoded.speaker

    def _result(self, probs: np.ndarray, start: float, end: float, speaker: str | None,
                wave16k: np.ndarray | None = None) -> UtteranceEmotion:
        text = self.transcriber(wave16k) if self.transcriber is not None and wave16k is not None else None
        return UtteranceEmotion(float(start), float(end), speaker, self.labels[int(probs.argmax())],
                                {k: float(p) for k, p in zip(self.labels, probs)}, text)


class LiveSession:
    """One live conversation: its own memory and VAD state, advanced as audio arrives.

    Times are seconds since the session's first sample (push_audio) or as given (push_utterance).
    Not thread-safe: a service must serialise calls on one session.

    limits: refuse a chunk over MAX_CHUNK_SECONDS and an utterance over MAX_UTTERANCE_SECONDS (what
    a live client may send at once); `Predictor.predict` reads a recording without them.
    """

    def __init__(self, predictor: Predictor, key: str, limits: bool = True):
        self.predictor = predictor
        self.key = key
        self._max_chunk_s = MAX_CHUNK_SECONDS if limits else None
        self._max_utterance_s = MAX_UTTERANCE_SECONDS if limits else None
        with predictor.model_lock:
            self._conv = predictor.engine.open(key)
        self._seg: StreamingSegmenter | None = None
        self._resampler: StreamResampler | None = None
        self._rate: int | None = None
        self._clock = 0.0  # end of the last pre-segmented utterance
        online = None  # online speaker assignment of utterances without a speaker (Predictor.speakers)
        if predictor.speakers != "none":
            from convmem.speakers.online import OnlineSpeakers

            online = OnlineSpeakers(None if predictor.speakers == "auto" else predictor.speakers)
        # this conversation's encoder: each speaker's running prosody, the online speakers
        self._encoder = predictor.bundle.encoder().conversation(online)
        self.closed = False

    @property
    def utterances(self) -> int:
        return self._conv.utterances

    @property
    def dropped_short(self) -> int:
        return self._seg.dropped_short if self._seg is not None else 0

    def push_audio(self, chunk: np.ndarray, sample_rate: int = SAMPLE_RATE) -> list[UtteranceEmotion]:
        """Feed float32[n] mono audio (any sane rate, resampled to 16 kHz as a stream); returns
        the utterances that ended (VAD) in what was pushed so far. One stream keeps one rate."""
        self._check_open()
        chunk = check_wave(chunk, sample_rate, "audio chunk", max_seconds=self._max_chunk_s)
        if self._rate is None:
            self._rate = int(sample_rate)
            self._resampler = StreamResampler(self._rate)
            self._seg = self.predictor._segmenter()
        elif int(sample_rate) != self._rate:
            raise AudioError(f"audio chunk: sample rate changed from {self._rate} to {sample_rate} Hz within a stream")
        return self._classify_all(self._seg.push(self._resampler.push(chunk)))

    def push_utterance(self, wave: np.ndarray, sample_rate: int = SAMPLE_RATE, start: float | None = None,
                       end: float | None = None, speaker: str | None = None) -> UtteranceEmotion:
        """Classify one pre-segmented utterance float32[n]; times default to back-to-back."""
        from convmem.audio.io import resample

        self._check_open()
        wave = check_wave(wave, sample_rate, "utterance", max_seconds=self._max_utterance_s)
        if wave.size < MIN_UTTERANCE_SECONDS * int(sample_rate):
            raise AudioError(f"utterance of {wave.size} samples ({wave.size / int(sample_rate):.3f} s) is shorter "
                             f"than the shortest one classified ({MIN_UTTERANCE_SECONDS:g} s)")
        wave = resample(wave, int(sample_rate), SAMPLE_RATE)
        start = self._clock if start is None else float(start)
        end = start + wave.size / SAMPLE_RATE if end is None else float(end)
        if not (math.isfinite(start) and math.isfinite(end) and 0 <= start < end):
            raise AudioError(f"utterance: times must be finite with 0 <= start < end, got {start}, {end}")
        self._clock = end
        probs, speaker = self.predictor._classify(self._conv, self._encoder, wave, speaker)
        return self.predictor._result(probs, start, end, speaker, wave)

    def flush(self) -> list[UtteranceEmotion]:
        """End of the audio stream: classify an utterance still open. The memory is kept, so
        the conversation may go on with a new stream."""
        self._check_open()
        if self._seg is None:
            return []
        found = self._seg.push(self._resampler.flush()) + self._seg.flush()
        self._resampler = StreamResampler(self._rate)
        return self._classify_all(found)

    def close(self) -> None:
        """Drop the memory and any buffered audio: nothing of this conversation is kept."""
        if not self.closed:
            with self.predictor.model_lock:
                self._conv.close()
        self._seg = self._resampler = self._encoder = None
        self.closed = True

    def _classify_all(self, segments) -> list[UtteranceEmotion]:
        out = []
        for s in segments:
            probs, speaker = self.predictor._classify(self._conv, self._encoder, s.wave)
            out.append(self.predictor._result(probs, s.start, s.end, speaker, s.wave))
        return out

    def _check_open(self) -> None:
        if self.closed:
            raise ConvmemError(f"live session {self.key!r} is closed")


def _empty_timeline_warnings(name: str, duration: float, peak: float, found: int, dropped: int,
                             shortest: float) -> list[str]:
    """Why a recording gave no utterance, said naming it: an empty timeline is otherwise silent."""
    if found:
        return []
    if duration < shortest:
        return [f"{name}: {duration:.3f} s of audio is shorter than the shortest utterance ({shortest:g} s); "
                "nothing was predicted"]
    if peak < SILENT_PEAK:
        level = f"{20 * math.log10(peak):.0f} dBFS" if peak > 0 else "digital silence"
        return [f"{name}: the audio is silent (peak {level}); nothing was predicted"]
    skipped = f" ({dropped} burst(s) shorter than {shortest:g} s skipped)" if dropped else ""
    return [f"{name}: no speech found{skipped}; nothing was predicted"]


def _array_blocks(wave: np.ndarray, rate: int, block_s: float = BLOCK_SECONDS):
    size = max(1, int(block_s * rate))
    for i in range(0, wave.size, size):
        block = wave[i: i + size]
        yield block, rate, block.size / rate
