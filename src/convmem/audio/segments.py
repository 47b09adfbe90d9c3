"""Read utterance segment files: where each utterance of a recording starts and ends.

Three formats, chosen by file extension or, failing that, by the first meaningful line:

- CSV with a header naming at least `start,end` (seconds) and optionally `speaker`; other columns
  (e.g. a label) are ignored.
- RTTM (NIST diarisation): `SPEAKER <file> <chan> <onset> <duration> <NA> <NA> <speaker> ...`;
  other line types and `;;` comments are skipped. One RTTM file may describe many recordings:
  only the lines of one recording are read: `file_id` when given, else the only one in the file,
  else the one named like the audio (`audio_stem`); anything else is an error, since merging two
  recordings' timelines is never meant.
- IEMOCAP EmoEvaluation style: `[6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[...]`;
  `%` headers and annotator lines are skipped.

Only times and speakers are read: any emotion label in the file is ignored, so gold labels can
never reach inference. Every problem is a ManifestError naming `file:line` and the field. The
segments are held to the rule manifests are held to (corpus/turn_times.py): no same-speaker
overlaps, no duplicates, and, once the audio is known (`check_segments`), inside the audio.
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


def read_segments(path: str | Path, file_id: str | None = None, audio_stem: str | None = None
                  ) -> list[TimeSegment]:
    """Parse a CSV, RTTM or IEMOCAP-style segment file; returns segments sorted by (start, end).
    `file_id`, `audio_stem`: which recording of an RTTM file to read (module doc); other formats
    describe one recording and ignore them."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: segments file not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: cannot read segments file as UTF-8 text ({exc})") from None
    kind = _detect(path, text)
    if kind == "rttm":
        segments = _read_rttm(path, text, file_id, audio_stem)
    else:
        segments = {"csv": _read_csv, "iemocap": _read_iemocap}[kind](path, text)
    if not segments:
        raise ManifestError(f"{path}: no segments found ({kind} format)")
    segments = sorted(segments, key=lambda s: (s.start, s.end))
    check_segments(segments)
    return segments


def check_segments(segments: list[TimeSegment], duration: float | None = None, audio: str | None = None) -> None:
    """The turn-time rule of corpus/turn_times.py, errors naming each segment's `file:line`."""
    from convmem.corpus.turn_times import check_turn_times

    def ref(i: int) -> str:
        return segments[i].where or f"segment {i} ({segments[i].start}-{segments[i].end} s)"

    check_turn_times(segments, lambda i, _: ref(i), ref, duration, audio)


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


def _read_rttm(path: Path, text: str, file_id: str | None, audio_stem: str | None) -> list[TimeSegment]:
    by_file: dict[str, list[TimeSegment]] = {}
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
        by_file.setdefault(fields[1], []).append(TimeSegment(start, end, speaker, None, where))
    if file_id is not None:
        if file_id not in by_file:
            raise ManifestError(f"{path}: no SPEAKER lines for recording {file_id!r} "
                                f"(the file describes {_names(by_file)})")
        return by_file[file_id]
    if len(by_file) > 1 and audio_stem in by_file:
        return by_file[audio_stem]
    if len(by_file) > 1:
        raise ManifestError(f"{path}: RTTM lines of {len(by_file)} recordings ({_names(by_file)}); "
                            "say which one is this audio's (predict --file-id)")
    return next(iter(by_file.values()), [])


def _names(by_file: dict) -> str:
    names = sorted(by_file)
    return ", ".join(repr(n) for n in names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "") \
        if names else "none"


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
