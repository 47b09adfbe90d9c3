"""Read utterance segment files: where each utterance of a recording starts and ends.

Three formats, chosen by file extension or, failing that, by the first meaningful line:

- CSV with a header naming at least `start,end` (seconds) and optionally `speaker`; other columns
  (e.g. a label) are ignored.
- RTTM (NIST diarisation): `SPEAKER <file> <chan> <onset> <duration> <NA> <NA> <speaker> ...`;
  other line types and `;;` comments are skipped.
- IEMOCAP EmoEvaluation style: `[6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[...]`;
  `%` headers and annotator lines are skipped.

Only times and speakers are read: any emotion label in the file is ignored, so gold labels can
never reach inference. Every problem is a ManifestError naming `file:line` and the field.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

from convmem.errors import ManifestError


@dataclass(frozen=True)
class TimeSegment:
    """One utterance's span [start, end) in seconds; `where` is `file:line` for error messages."""

    start: float
    end: float
    speaker: str | None = None
    id: str | None = None
    where: str = ""

    @property
    def duration(self) -> float:
        return self.end - self.start


def read_segments(path: str | Path) -> list[TimeSegment]:
    """Parse a CSV, RTTM or IEMOCAP-style segment file; returns segments sorted by (start, end)."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: segments file not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: cannot read segments file as UTF-8 text ({exc})") from None
    kind = _detect(path, text)
    segments = {"csv": _read_csv, "rttm": _read_rttm, "iemocap": _read_iemocap}[kind](path, text)
    if not segments:
        raise ManifestError(f"{path}: no segments found ({kind} format)")
    return sorted(segments, key=lambda s: (s.start, s.end))


def _detect(path: Path, text: str) -> str:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix == ".rttm":
        return "rttm"
    for line in text.splitlines():
        s = line.strip()
        if not s or s.startswith("%") or s.startswith(";;"):
            continue
        if s.startswith("["):
            return "iemocap"
        if s.split()[0] == "SPEAKER":
            return "rttm"
        if "," in s:
            return "csv"
        break
    raise ManifestError(f"{path}: unknown segments format: expected a CSV with a start,end header, "
                        "RTTM 'SPEAKER ...' lines or IEMOCAP '[start - end]<TAB>id<TAB>label' lines")


def _times(start: str, end: str, where: str, end_is_duration: bool = False) -> tuple[float, float]:
    try:
        a = float(start)
    except ValueError:
        raise ManifestError(f"{where}: start {start!r} is not a number of seconds") from None
    try:
        b = float(end)
    except ValueError:
        name = "duration" if end_is_duration else "end"
        raise ManifestError(f"{where}: {name} {end!r} is not a number of seconds") from None
    if end_is_duration:
        if not math.isfinite(b) or b <= 0:
            raise ManifestError(f"{where}: duration {end} s must be positive")
        b = a + b
    if not (math.isfinite(a) and math.isfinite(b)):
        raise ManifestError(f"{where}: start/end must be finite, got {start}, {end}")
    if a < 0:
        raise ManifestError(f"{where}: start {a} s is negative")
    if b <= a:
        raise ManifestError(f"{where}: end {b} s is not after start {a} s")
    return a, b


def _read_csv(path: Path, text: str) -> list[TimeSegment]:
    rows = csv.reader(text.splitlines())
    header = None
    out = []
    for lineno, row in enumerate(rows, start=1):
        if not row or all(not c.strip() for c in row):
            continue
        if header is None:
            header = [c.strip().lower() for c in row]
            missing = [c for c in ("start", "end") if c not in header]
            if missing:
                raise ManifestError(f"{path}:{lineno}: CSV header must name columns start,end[,speaker]; "
                                    f"missing {', '.join(missing)} (got {', '.join(header)})")
            continue
        where = f"{path}:{lineno}"
        if len(row) != len(header):
            raise ManifestError(f"{where}: {len(row)} fields, the header has {len(header)}")
        rec = dict(zip(header, (c.strip() for c in row)))
        start, end = _times(rec["start"], rec["end"], where)
        speaker = rec.get("speaker") or None
        out.append(TimeSegment(start, end, speaker, rec.get("id") or None, where))
    if header is None:
        raise ManifestError(f"{path}: empty CSV (expected a start,end[,speaker] header)")
    return out


def _read_rttm(path: Path, text: str) -> list[TimeSegment]:
    out = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].startswith(";;") or fields[0] != "SPEAKER":
            continue
        where = f"{path}:{lineno}"
        if len(fields) < 8:
            raise ManifestError(f"{where}: RTTM SPEAKER line needs at least 8 fields "
                                f"(type file chan onset duration NA NA speaker), got {len(fields)}")
        start, end = _times(fields[3], fields[4], where, end_is_duration=True)
        speaker = fields[7] if fields[7] != "<NA>" else None
        out.append(TimeSegment(start, end, speaker, None, where))
    return out


def _read_iemocap(path: Path, text: str) -> list[TimeSegment]:
    # The corpus loader's own line reader, so both read IEMOCAP lines the same way.
    from convmem.corpus.iemocap import emo_evaluation_lines, turn_speaker

    out = []
    for lineno, raw, m in emo_evaluation_lines(text):
        where = f"{path}:{lineno}"
        if m is None:
            raise ManifestError(f"{where}: not a segment line '[start - end]<TAB>id<TAB>label<TAB>[...]': {raw[:80]!r}")
        start, end = _times(m["start"], m["end"], where)
        out.append(TimeSegment(start, end, turn_speaker(m["turn"]), m["turn"], where))
    return out
