"""The one rule for where utterances lie in a recording, shared by every reader of turn times.

A manifest's utterances (corpus/manifest.py) and a segments file's lines (audio/segments.py: CSV,
RTTM, IEMOCAP-style) describe the same thing, so they are held to the same rule:

- times are finite, start >= 0 and end > start;
- a turn starts inside the audio and ends inside it, up to TIME_TOLERANCE_S (annotated ends often
  overshoot the audio by a frame or two; IEMOCAP's do);
- one speaker's turns are in time order and never overlap (two speakers may talk at once); a turn
  without a speaker counts as one unnamed speaker's, so speakerless segments may not overlap;
- the same turn twice (same start, end and speaker) is a duplicate, named as such.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from convmem.errors import ManifestError

TIME_TOLERANCE_S = 0.05


class Turn(Protocol):
    start: float
    end: float
    speaker: str | None


def check_turn_times(turns: Sequence[Turn], where: Callable[[int, str], str], ref: Callable[[int], str],
                     duration: float | None = None, audio: str | Path | None = None) -> None:
    """Raise ManifestError for the first turn that breaks the rule (module doc).

    Args:
        turns: in the order they are read (a manifest's dialogue order, a segments file's time order).
        where: (index, field "start"/"end") -> the location to name, e.g. "m.jsonl:2: utterances[3].start".
        ref: index -> how another message names that turn, e.g. "utterances[1] 'u1'" or "s.csv:4".
        duration: seconds of the audio, when known; audio: its name for messages.
    """
    last: dict[str | None, int] = {}
    seen: dict[tuple[float, float, str | None], int] = {}
    for i, t in enumerate(turns):
        if not (math.isfinite(t.start) and math.isfinite(t.end)):
            raise ManifestError(f"{where(i, 'start')}: start/end must be finite, got {t.start}, {t.end}")
        if t.start < 0:
            raise ManifestError(f"{where(i, 'start')}: negative time {t.start}")
        if t.start >= t.end:
            raise ManifestError(f"{where(i, 'start')}: start {t.start} >= end {t.end} ({ref(i)})")
        if duration is not None and t.start >= duration:
            raise ManifestError(f"{where(i, 'start')}: starts at {t.start:.3f} s, after the end of the audio "
                                f"({duration:.3f} s, {audio})")
        if duration is not None and t.end > duration + TIME_TOLERANCE_S:
            raise ManifestError(f"{where(i, 'end')}: {t.end:.3f} s is outside the audio ({duration:.3f} s, {audio})")
        key = (t.start, t.end, t.speaker)
        if key in seen:
            raise ManifestError(f"{where(i, 'start')}: duplicates {ref(seen[key])} "
                                f"({t.start}-{t.end} s, {_speaker(t.speaker)})")
        seen[key] = i
        j = last.get(t.speaker)
        if j is not None:
            p = turns[j]
            if t.start < p.start:
                raise ManifestError(f"{where(i, 'start')}: turns of {_speaker(t.speaker)} are not sorted "
                                    f"({ref(i)} starts at {t.start} before {ref(j)} at {p.start})")
            if t.start < p.end - 1e-6:
                raise ManifestError(f"{where(i, 'start')}: turns of {_speaker(t.speaker)} overlap "
                                    f"({ref(i)} starts at {t.start} before {ref(j)} ends at {p.end})")
        last[t.speaker] = i


def _speaker(speaker: str | None) -> str:
    return f"speaker {speaker!r}" if speaker is not None else "the unnamed speaker"
