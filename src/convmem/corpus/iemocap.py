"""IEMOCAP (`IEMOCAP_full_release`) → Dialogue records.

Layout read (Busso et al., 2008)::

    SessionN/dialog/EmoEvaluation/<dialog>.txt      labels, one block per turn
    SessionN/dialog/wav/<dialog>.wav                the whole dialogue (required)
    SessionN/sentences/wav/<dialog>/<turn>.wav      each turn (optional: falls back to the dialogue)
    SessionN/dialog/transcriptions/<dialog>.txt     text (optional)

An EmoEvaluation block starts with ``[6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5, 2.5, 2.5]``
followed by annotator lines (``C-E1:<TAB>Neutral;<TAB>()``); the file starts with a ``%`` header.

Labels: the four classes of the DPM paper with excited merged into happy (5531 scored turns on
the full release); frustrated, surprised, fearful, disgusted, other and no-agreement (xxx) are
kept in the dialogue, in time order, as unscored context turns.

The speaker is the letter before the turn number (``Ses01F_impro01_M000`` is the *male* actor of
session 1) and is named ``Ses01_M``, unique across the corpus; the session is ``Ses01``.

Real annotations are not always consistent with the audio, so the loader repairs three things
and counts each in the report instead of failing: a turn that ends after the dialogue audio is
clipped to it; a turn that starts after the audio ends is dropped; a turn of one speaker that
starts before that speaker's previous turn ends has the previous turn's end clipped to its start
(the manifest forbids overlapping turns of one speaker; different speakers may overlap).
Anything malformed in the text files is a ManifestError naming file and line.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from convmem.audio.io import audio_info
from convmem.corpus.types import Dialogue, Utterance
from convmem.errors import AudioError, ManifestError

# Original label → our 4-class label (None = unscored context turn).
LABEL_MAP: dict[str, str | None] = {
    "neu": "neu", "hap": "hap", "exc": "hap", "sad": "sad", "ang": "ang",
    "fru": None, "sur": None, "fea": None, "dis": None, "oth": None, "xxx": None,
}
_TURN_LINE = re.compile(
    r"^\[\s*(?P<start>\d+(?:\.\d+)?)\s*-\s*(?P<end>\d+(?:\.\d+)?)\s*\]\s+(?P<turn>\S+)\s+(?P<label>\S+)(?:\s+\[[^\]]*\])?\s*$"
)
_ANNOTATOR_LINE = re.compile(r"^[A-Z]+-[A-Za-z0-9]+:")
_TURN_NAME = re.compile(r"^(?P<dialog>(?P<session>Ses\d\d)[FM]_.+)_(?P<speaker>[FM])(?P<num>[0-9A-Za-z]+)$")
_DIALOG_NAME = re.compile(r"^Ses\d\d[FM]_.+$")
_TRANSCRIPT_LINE = re.compile(r"^(?P<turn>\S+)\s+\[[\d.]+\s*-\s*[\d.]+\]:\s?(?P<text>.*)$")
# A turn needs a few milliseconds left after clipping, or it is dropped.
_MIN_TURN_S = 0.01


@dataclass
class IemocapReport:
    """What the loader changed or could not find, with counts (the CLI prints `lines()`)."""

    raw_labels: Counter = field(default_factory=Counter)
    clipped_to_audio: list[str] = field(default_factory=list)
    dropped_beyond_audio: list[str] = field(default_factory=list)
    overlaps_clipped: list[str] = field(default_factory=list)
    dropped_overlap: list[str] = field(default_factory=list)
    missing_sentence_wavs: list[str] = field(default_factory=list)
    missing_transcriptions: list[str] = field(default_factory=list)
    unparsed_transcript_lines: int = 0

    def lines(self) -> list[str]:
        items = [
            ("turn end(s) clipped to the dialogue audio", self.clipped_to_audio),
            ("turn(s) starting after the dialogue audio ends, dropped", self.dropped_beyond_audio),
            ("same-speaker overlap(s): earlier turn's end clipped to the next start", self.overlaps_clipped),
            ("turn(s) inside an earlier turn of the same speaker, dropped", self.dropped_overlap),
            ("turn(s) without sentences/wav file: using the dialogue wav", self.missing_sentence_wavs),
            ("dialog(s) without transcription file: no text", self.missing_transcriptions),
        ]
        out = [f"{len(v)} {what} (first: {', '.join(v[:3])})" for what, v in items if v]
        if self.unparsed_transcript_lines:
            out.append(f"{self.unparsed_transcript_lines} transcription line(s) not of the form "
                       f"'<turn> [start-end]: text', ignored")
        return out


def load_iemocap(root: str | Path, sessions: list[int] | None = None,
                 report: IemocapReport | None = None, progress: bool = False) -> list[Dialogue]:
    """Read `IEMOCAP_full_release` at `root` into dialogues sorted by session and name.

    Args:
        root: folder holding Session1..Session5.
        sessions: session numbers to read (default: every SessionN folder found).
        report: filled with what was repaired or missing.
        progress: show a progress bar over dialog files.
    """
    from tqdm import tqdm

    root = Path(root)
    report = report if report is not None else IemocapReport()
    if not root.is_dir():
        raise ManifestError(f"{root}: IEMOCAP folder not found")
    found = {int(p.name[len("Session"):]): p for p in root.iterdir()
             if p.is_dir() and re.fullmatch(r"Session\d+", p.name)}
    if not found:
        raise ManifestError(f"{root}: no SessionN folders (expected IEMOCAP_full_release/Session1/dialog/...)")
    wanted = sorted(found) if sessions is None else sessions
    missing = [s for s in wanted if s not in found]
    if missing:
        raise ManifestError(f"{root}: session folder(s) not found: {', '.join(f'Session{s}' for s in missing)}")
    dialogues = []
    bar = tqdm(total=0, desc="iemocap dialogs", unit="dlg", disable=not progress)
    for s in wanted:
        eval_dir = found[s] / "dialog" / "EmoEvaluation"
        if not eval_dir.is_dir():
            raise ManifestError(f"{eval_dir}: EmoEvaluation folder not found")
        files = sorted(p for p in eval_dir.iterdir()
                       if p.is_file() and p.suffix == ".txt" and _DIALOG_NAME.match(p.stem))
        if not files:
            raise ManifestError(f"{eval_dir}: no <dialog>.txt label files (e.g. Ses01F_impro01.txt)")
        bar.total += len(files)
        for f in files:
            dialogues.append(_load_dialog(found[s], f, report))
            bar.update()
    bar.close()
    return dialogues


@dataclass
class _Turn:
    name: str
    start: float
    end: float
    label: str
    lineno: int


def emo_evaluation_lines(text: str) -> Iterator[tuple[int, str, "re.Match | None"]]:
    """(line number, raw line, turn-line match or None) for every line of an EmoEvaluation-style
    text that is not blank, a `%` header or an annotator line; callers word their own errors."""
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("%") or _ANNOTATOR_LINE.match(line):
            continue
        yield lineno, raw, _TURN_LINE.match(line)


def turn_speaker(turn: str) -> str | None:
    """`Ses01F_impro01_M000` -> `Ses01_M` (the letter before the turn number), or None."""
    name = _TURN_NAME.match(turn)
    return f"{name['session']}_{name['speaker']}" if name else None


def parse_emo_evaluation(path: Path) -> list[_Turn]:
    """Turn lines of one EmoEvaluation file; ManifestError names `path:line` for anything malformed."""
    dialog = path.stem
    turns: list[_Turn] = []
    seen: dict[str, int] = {}
    text = _read_text(path)
    for lineno, raw, m in emo_evaluation_lines(text):
        where = f"{path}:{lineno}"
        if m is None:
            raise ManifestError(
                f"{where}: not a turn line '[start - end]<TAB>turn<TAB>label<TAB>[v, a, d]' "
                f"nor an annotator line: {raw[:80]!r}"
            )
        start, end, name, label = float(m["start"]), float(m["end"]), m["turn"], m["label"]
        nm = _TURN_NAME.match(name)
        if nm is None or nm["dialog"] != dialog:
            raise ManifestError(f"{where}: turn name {name!r} does not belong to dialog {dialog!r} "
                                f"(expected {dialog}_F000 or {dialog}_M000 style)")
        if label not in LABEL_MAP:
            raise ManifestError(f"{where}: unknown emotion label {label!r} for {name} "
                                f"(known: {', '.join(sorted(LABEL_MAP))})")
        if end <= start:
            raise ManifestError(f"{where}: turn {name} ends at {end} s, not after its start {start} s")
        if name in seen:
            raise ManifestError(f"{where}: turn {name} appears twice (first on line {seen[name]})")
        seen[name] = lineno
        turns.append(_Turn(name, start, end, label, lineno))
    if not turns:
        raise ManifestError(f"{path}: no turn lines ('[start - end]<TAB>turn<TAB>label<TAB>[v, a, d]')")
    return turns


def parse_transcription(path: Path, report: IemocapReport) -> dict[str, str]:
    """turn name → text; lines of another form (IEMOCAP has a few) are counted and ignored."""
    out: dict[str, str] = {}
    for raw in _read_text(path).splitlines():
        if not raw.strip():
            continue
        m = _TRANSCRIPT_LINE.match(raw.strip())
        if m is None:
            report.unparsed_transcript_lines += 1
            continue
        out[m["turn"]] = m["text"].strip()
    return out


def _load_dialog(session_dir: Path, eval_file: Path, report: IemocapReport) -> Dialogue:
    dialog = eval_file.stem
    turns = parse_emo_evaluation(eval_file)
    wav = session_dir / "dialog" / "wav" / f"{dialog}.wav"
    if not wav.is_file():
        raise ManifestError(f"{eval_file}: dialogue audio not found: {wav}")
    try:
        duration = audio_info(wav).duration
    except AudioError as exc:
        raise ManifestError(f"{eval_file}: dialogue audio unusable: {exc}") from None
    tfile = session_dir / "dialog" / "transcriptions" / f"{dialog}.txt"
    texts = parse_transcription(tfile, report) if tfile.is_file() else {}
    if not tfile.is_file():
        report.missing_transcriptions.append(dialog)
    session = dialog[:5]
    utts: list[Utterance] = []
    last: dict[str, Utterance] = {}
    for t in sorted(turns, key=lambda t: (t.start, t.end, t.name)):
        report.raw_labels[t.label] += 1
        speaker = f"{session}_{_TURN_NAME.match(t.name)['speaker']}"
        start, end = t.start, t.end
        if start >= duration - _MIN_TURN_S:
            report.dropped_beyond_audio.append(t.name)
            continue
        if end > duration:
            report.clipped_to_audio.append(t.name)
            end = duration
        prev = last.get(speaker)
        if prev is not None and start < prev.end:
            if start - prev.start < _MIN_TURN_S or end <= prev.end:
                report.dropped_overlap.append(t.name)
                continue
            report.overlaps_clipped.append(prev.id)
            prev.end = start
        sent = session_dir / "sentences" / "wav" / dialog / f"{t.name}.wav"
        if not sent.is_file():
            report.missing_sentence_wavs.append(t.name)
        u = Utterance(id=t.name, speaker=speaker, start=start, end=end, emotion=LABEL_MAP[t.label],
                      audio=sent if sent.is_file() else None, text=texts.get(t.name))
        utts.append(u)
        last[speaker] = u
    if not utts:
        raise ManifestError(f"{eval_file}: no turn lies inside the dialogue audio {wav} ({duration:.2f} s)")
    return Dialogue(dialogue_id=dialog, session=session, utterances=utts, audio=wav)


def _read_text(path: Path) -> str:
    # The release is ASCII; a stray latin-1 byte must not abort a whole corpus build.
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")
