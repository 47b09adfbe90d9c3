"""Segmentation sensitivity: the same corpus scored with gold and with VAD utterance boundaries.

A reviewer's concern about the DPM paper is that it evaluates on gold (hand-made) utterance
boundaries, which a deployed system never has. Here a dialogue's whole audio is segmented by the
same streaming silero-vad segmenter `convmem predict` uses (audio/vad.py), the memory runs over
the VAD segments, and each gold utterance receives the prediction of the VAD segment that
overlaps it most in time. A gold utterance no VAD segment overlaps gets no prediction; the runner
should count it (and score it as wrong, which is what a deployed system would deliver) and
report that count beside the scores.

`map_to_gold` is pure (times and predictions only); `run_vad_dialogue` is the convenience that
segments, tokenizes and runs a Bundle's engine for one dialogue.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Generic, Sequence, TypeVar

import numpy as np

from convmem.audio.vad import VADConfig

T = TypeVar("T")


@dataclass
class GoldMapping(Generic[T]):
    """Per gold utterance: the matched VAD prediction (None = no overlapping segment), the index
    of that VAD segment (-1 = none) and the overlap in seconds."""

    predictions: list[T | None]
    segment: list[int]
    overlap: list[float]

    @property
    def unmatched(self) -> int:
        return sum(1 for s in self.segment if s < 0)


def map_to_gold(vad_segments: Sequence[tuple[float, float]], vad_predictions: Sequence[T],
                gold: Sequence[tuple[float, float]]) -> GoldMapping[T]:
    """Give each gold utterance the prediction of the VAD segment with the largest time overlap.

    Args:
        vad_segments: [(start, end)] seconds, in time order and non-overlapping (VAD output).
        vad_predictions: one prediction per VAD segment (a label, an index, a logits row...).
        gold: [(start, end)] seconds of the gold utterances, any order (speakers may overlap).
    Ties go to the earlier segment; zero-length touching does not count as overlap.
    """
    if len(vad_segments) != len(vad_predictions):
        raise ValueError(f"{len(vad_segments)} VAD segments but {len(vad_predictions)} predictions")
    starts = [float(s) for s, _ in vad_segments]
    ends = [float(e) for _, e in vad_segments]
    if any(nxt < prev for nxt, prev in zip(starts[1:], ends[:-1])) or any(e < s for s, e in zip(starts, ends)):
        raise ValueError("VAD segments must be in time order and must not overlap")
    preds: list[T | None] = []
    seg_idx: list[int] = []
    overlaps: list[float] = []
    for gs, ge in gold:
        best, best_ov = -1, 0.0
        # segments overlapping [gs, ge) form a contiguous run: ends after gs .. starts before ge
        for j in range(bisect.bisect_right(ends, gs), bisect.bisect_left(starts, ge)):
            ov = min(ends[j], ge) - max(starts[j], gs)
            if ov > best_ov:
                best, best_ov = j, ov
        seg_idx.append(best)
        overlaps.append(best_ov)
        preds.append(vad_predictions[best] if best >= 0 else None)
    return GoldMapping(preds, seg_idx, overlaps)


def vad_segments_for_dialogue(dialogue, config: VADConfig = VADConfig(), model=None,
                              block_s: float = 30.0) -> list[tuple[float, float]]:
    """VAD utterances [(start, end)] seconds of `dialogue.audio` (the whole dialogue recording),
    found by the streaming segmenter exactly as `convmem predict` finds them."""
    return [(s.start, s.end) for s in _vad_utterances(dialogue, config, model, block_s)]


@dataclass
class VadDialogueResult:
    """One dialogue run over its VAD segments. logits: float32[U_gold, E], NaN rows where no
    VAD segment overlaps the gold utterance; `mapping` says which segment each row came from."""

    dialogue_id: str
    segments: list[tuple[float, float]]
    segment_logits: np.ndarray  # float32[S, E]
    logits: np.ndarray
    mapping: GoldMapping
    gold: list[tuple[float, float]]

    @property
    def matched(self) -> np.ndarray:
        return np.array([s >= 0 for s in self.mapping.segment], bool)


def run_vad_dialogue(bundle, method: str, dialogue, config: VADConfig = VADConfig(), engine=None,
                     model=None) -> VadDialogueResult:
    """Segment `dialogue` with VAD, stream the segments through `bundle`'s `method` memory (one
    pass, keyed by the dialogue id) and map the predictions back to the gold utterances.

    Gold labels are not read: only the gold utterances' times.
    """
    from convmem.memory import registry

    engine = engine if engine is not None else bundle.engine(method)
    segs, ids = [], []
    live = bundle.encoder().conversation()  # VAD segments carry no speaker: one shared speaker
    for s in _vad_utterances(dialogue, config, model):
        segs.append((s.start, s.end))
        ids.append(live.encode(s.wave).model_input(bundle.vocab))
    n_labels = len(bundle.labels)
    if ids:
        # a memory's own grad mode; a name that is not a registered memory (a study's DPM variant,
        # whose caller chose the mode) runs in the caller's
        with registry.grad_mode(method):
            seg_logits = engine.run([ids], keys=[dialogue.dialogue_id])[0].logits
    else:
        seg_logits = np.zeros((0, n_labels), np.float32)
    gold = [(u.start, u.end) for u in dialogue.utterances]
    mapping = map_to_gold(segs, list(range(len(segs))), gold)
    logits = np.full((len(gold), n_labels), np.nan, np.float32)
    for g, j in enumerate(mapping.segment):
        if j >= 0:
            logits[g] = seg_logits[j]
    return VadDialogueResult(dialogue.dialogue_id, segs, seg_logits, logits, mapping, gold)


def segmentation_summary(results: Sequence[VadDialogueResult]) -> dict:
    """Counts for the report: gold utterances, VAD segments, gold utterances without any
    overlapping segment, and the mean share of a gold utterance its matched segment covers."""
    n_gold = sum(len(r.gold) for r in results)
    cover = [ov / (e - s) for r in results for (s, e), ov in zip(r.gold, r.mapping.overlap) if e > s]
    unmatched = sum(r.mapping.unmatched for r in results)
    return {"dialogues": len(results), "gold_utterances": n_gold,
            "vad_segments": sum(len(r.segments) for r in results), "unmatched": unmatched,
            "unmatched_rate": unmatched / n_gold if n_gold else 0.0,
            "mean_gold_coverage": float(np.mean(cover)) if cover else 0.0}


def _vad_utterances(dialogue, config: VADConfig, model, block_s: float = 30.0):
    """Stream the dialogue recording through a fresh StreamingSegmenter, block by block."""
    from convmem.audio.io import StreamResampler, iter_file_blocks
    from convmem.audio.vad import StreamingSegmenter, load_vad_model
    from convmem.errors import ManifestError

    if dialogue.audio is None:
        raise ManifestError(f"dialogue {dialogue.dialogue_id}: no whole-dialogue audio to segment with VAD")
    seg = StreamingSegmenter(config, model=model if model is not None else load_vad_model(config.backend))
    resampler = None
    for block, rate, _ in iter_file_blocks(dialogue.audio, block_s):
        resampler = resampler or StreamResampler(rate)
        yield from seg.push(resampler.push(block))
    if resampler is not None:
        yield from seg.push(resampler.flush())
    yield from seg.flush()
