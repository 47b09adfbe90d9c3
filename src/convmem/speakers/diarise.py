"""Diarisation of a recording: who spoke when, as utterance segments with speaker labels.

    turns = diarise("call.wav")                  # speakers estimated
    turns = diarise("call.wav", n_speakers=2)    # or given
    timeline = predictor.predict("call.wav", segments=turns)

Steps, one pass over the file block by block (memory constant in its length):
1. silero-vad cuts speech into utterances (audio/vad.py `StreamingSegmenter`, the same settings
   `predict` uses, so the utterances are the ones predict would classify);
2. every utterance is embedded with the GE2E encoder (encoder.py) and its audio dropped; an
   utterance longer than `2 * WINDOW_S` is embedded as consecutive windows of about `WINDOW_S`
   instead, so a speaker change inside one VAD segment (two people with no pause between them)
   can be seen;
3. all embeddings are clustered together (cluster.py), and each utterance takes its windows'
   labels: with `resegment`, it is split where the label of consecutive windows changes; without,
   it takes the label covering most of its time.

The result is a `TimeSegment` list (audio/segments.py), the same type a segments file gives, so
everything downstream (prosody marks per speaker, timeline, plot, JSON/CSV) reads it unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convmem.audio.segments import TimeSegment
from convmem.audio.vad import SAMPLE_RATE, StreamingSegmenter, VADConfig, check_wave

WINDOW_S = 1.5  # sub-window of a long utterance: about one 1.6 s GE2E partial


@dataclass(frozen=True)
class _Unit:
    """One embedded piece: [start, end) seconds inside utterance `utterance`."""

    utterance: int
    start: float
    end: float


def windows(start: float, end: float, window: float = WINDOW_S) -> list[tuple[float, float]]:
    """[start, end) cut into consecutive pieces of about `window` s (the last one 0.5-1.5 x window);
    spans up to 2 x window stay whole."""
    length = end - start
    if length <= 2 * window:
        return [(start, end)]
    n = int(length // window)
    edges = np.linspace(start, end, n + 1)
    return [(float(a), float(b)) for a, b in zip(edges[:-1], edges[1:])]


def speech_units(audio: str | Path | np.ndarray, sample_rate: int = SAMPLE_RATE, vad: VADConfig = VADConfig(),
                 window: float | None = WINDOW_S, stats: dict | None = None
                 ) -> tuple[list[tuple[float, float]], list[_Unit], np.ndarray]:
    """VAD utterances, their embedded units and the embeddings float32[units, 256] (one pass);
    `stats`, when given, gets "dropped_short": speech bursts shorter than vad.min_utterance_s."""
    from convmem.audio.io import StreamResampler, iter_file_blocks
    from convmem.speakers.encoder import embed_utterance

    if isinstance(audio, (str, Path)):
        blocks = iter_file_blocks(Path(audio))
    else:
        wave = check_wave(audio, sample_rate, "audio array")
        step = int(30 * sample_rate)
        blocks = ((wave[i:i + step], int(sample_rate), 0.0) for i in range(0, wave.size, step))
    segmenter = StreamingSegmenter(vad)
    resampler = None
    utterances: list[tuple[float, float]] = []
    units: list[_Unit] = []
    embeddings: list[np.ndarray] = []

    def take(found) -> None:
        for seg in found:
            index = len(utterances)
            utterances.append((seg.start, seg.end))
            spans = windows(seg.start, seg.end, window) if window else [(seg.start, seg.end)]
            for a, b in spans:
                piece = seg.wave[int(round((a - seg.start) * SAMPLE_RATE)): int(round((b - seg.start) * SAMPLE_RATE))]
                units.append(_Unit(index, a, b))
                embeddings.append(embed_utterance(piece, SAMPLE_RATE))

    for block, rate, _ in blocks:
        if resampler is None:
            resampler = StreamResampler(rate)
        take(segmenter.push(resampler.push(block)))
    if resampler is not None:
        take(segmenter.push(resampler.flush()) + segmenter.flush())
    if stats is not None:
        stats["dropped_short"] = segmenter.dropped_short
    matrix = np.stack(embeddings) if embeddings else np.zeros((0, 256), np.float32)
    return utterances, units, matrix


def diarise(audio: str | Path | np.ndarray, sample_rate: int = SAMPLE_RATE, n_speakers: int | None = None,
            vad: VADConfig = VADConfig(), resegment: bool = True, stats: dict | None = None) -> list[TimeSegment]:
    """Speaker-labelled utterances of a recording (module doc), in time order.

    Args:
        audio: a wav/flac/ogg path or float32[samples] at `sample_rate`.
        n_speakers: how many speakers (None: estimated, cluster.py `estimate_labels`).
        resegment: split an utterance where its windows' speaker changes.
        stats: filled with "dropped_short" (see speech_units).
    Returns: [TimeSegment(start, end, speaker="spkK", where="diarisation")]; [] when no speech.
    """
    from convmem.speakers.cluster import check_n_speakers, cluster_embeddings, speaker_name

    check_n_speakers(n_speakers)
    utterances, units, emb = speech_units(audio, sample_rate, vad, stats=stats)
    if not units:
        return []
    labels = cluster_embeddings(emb, n_speakers, durations=np.array([u.end - u.start for u in units]))
    return assemble(utterances, units, labels, resegment, speaker_name)


def assemble(utterances, units, labels, resegment: bool, name) -> list[TimeSegment]:
    """Utterances with their units' labels -> TimeSegments (split at label changes if `resegment`)."""
    out: list[TimeSegment] = []
    by_utt: dict[int, list[tuple[_Unit, int]]] = {}
    for u, k in zip(units, labels):
        by_utt.setdefault(u.utterance, []).append((u, int(k)))
    for index, (start, end) in enumerate(utterances):
        pieces = by_utt.get(index, [])
        if not pieces:
            continue
        if not resegment:
            weight: dict[int, float] = {}
            for u, k in pieces:
                weight[k] = weight.get(k, 0.0) + u.end - u.start
            out.append(TimeSegment(start, end, name(max(weight, key=weight.get)), where="diarisation"))
            continue
        a, current = start, pieces[0][1]
        for u, k in pieces[1:]:
            if k != current:
                out.append(TimeSegment(a, u.start, name(current), where="diarisation"))
                a, current = u.start, k
        out.append(TimeSegment(a, end, name(current), where="diarisation"))
    return out
