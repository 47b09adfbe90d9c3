"""Dialogue and Utterance records: the one in-memory form of every corpus.

Times are seconds in the dialogue's audio. `emotion is None` marks a turn that is heard as
context but never scored (e.g. IEMOCAP "fru", MELD "surprise" under the 4-class mapping).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# The paper's IEMOCAP label set (4 classes); the default everywhere.
EMOTIONS: tuple[str, ...] = ("neu", "hap", "sad", "ang")
# MELD's 7 classes under our short names (neutral, joy, sadness, anger, surprise, fear, disgust).
EMOTIONS_7: tuple[str, ...] = ("neu", "hap", "sad", "ang", "sur", "fea", "dis")
KNOWN_LABELS: frozenset[str] = frozenset(EMOTIONS_7)


@dataclass
class Utterance:
    """One turn. `audio`, when set, is an absolute path to this turn's own file."""

    id: str
    speaker: str
    start: float
    end: float
    emotion: str | None = None
    audio: Path | None = None
    text: str | None = None

    @property
    def duration(self) -> float:
        return self.end - self.start

    @property
    def scored(self) -> bool:
        return self.emotion is not None

    def to_json(self, base: Path) -> dict:
        out: dict = {
            "id": self.id,
            "speaker": self.speaker,
            "start": round(float(self.start), 4),
            "end": round(float(self.end), 4),
            "emotion": self.emotion,
        }
        if self.audio is not None:
            out["audio"] = _relative(self.audio, base)
        if self.text is not None:
            out["text"] = self.text
        return out


@dataclass
class Dialogue:
    """A conversation: utterances in time order; `audio` (absolute) holds the whole dialogue."""

    dialogue_id: str
    session: str
    utterances: list[Utterance] = field(default_factory=list)
    audio: Path | None = None

    @property
    def speakers(self) -> list[str]:
        seen: dict[str, None] = {}
        for u in self.utterances:
            seen.setdefault(u.speaker, None)
        return list(seen)

    @property
    def duration(self) -> float:
        return max((u.end for u in self.utterances), default=0.0)

    def to_json(self, base: Path) -> dict:
        out: dict = {"dialogue_id": self.dialogue_id, "session": self.session}
        if self.audio is not None:
            out["audio"] = _relative(self.audio, base)
        out["utterances"] = [u.to_json(base) for u in self.utterances]
        return out


def _relative(path: Path, base: Path) -> str:
    """Manifest paths are relative to the manifest's folder (DESIGN.md), posix-style."""
    import os

    return Path(os.path.relpath(Path(path).resolve(), Path(base).resolve())).as_posix()
