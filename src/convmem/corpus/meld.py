"""MELD (Poria et al., ACL 2019) → Dialogue records.

Reads the release CSVs ``{train,dev,test}_sent_emo.csv`` (columns ``Sr No., Utterance, Speaker,
Emotion, Sentiment, Dialogue_ID, Utterance_ID, Season, Episode, StartTime, EndTime``) and one audio
file per row, ``dia{D}_utt{U}.wav`` (or .flac/.ogg) in the split's audio folder.

Choices, and why:

- **Dialogue** = one Dialogue_ID of one split file; ids are made unique across splits
  (``train_dia12``, utterance ``train_dia12_utt3``) because every split restarts at 0.
- **Session** = the split name. MELD has no recording sessions; the official train/dev/test
  split is the only fold (`convmem.corpus.splits.predefined_fold`), not leave-one-session-out.
- **Speakers** are the show's characters (``Chandler``, ``Monica``...). They appear in every split,
  so *speaker-disjointness does not hold for MELD*: `splits.speaker_overlap` reports the overlap and
  `predefined_fold(..., allow_speaker_overlap=True)` must be asked for explicitly.
- **Times**: StartTime/EndTime (``00:16:16,059``) are times in the *episode* and overlap between
  turns, and there is no dialogue audio. Each utterance therefore keeps its own file as `audio`, and
  start/end lie on a virtual dialogue timeline: the utterances' real durations laid end to end in
  Utterance_ID order, without pauses. Episode times are still parsed, so a malformed one is an error.
- **Labels**: ``labels="4"`` maps neutral/joy/sadness/anger to neu/hap/sad/ang and keeps surprise,
  fear and disgust as unscored context turns; ``labels="7"`` scores all seven.
- **Missing audio** is never dropped silently: by default it is an error giving the count and the
  first ids; with ``allow_missing=True`` those rows are left out and reported the same way.
- **Encoding**: the CSVs are UTF-8 with, in some copies, cp1252 bytes mixed in; each line is
  decoded as UTF-8 and, failing that, as cp1252, and the count of such lines is reported.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

from convmem.audio.io import audio_info
from convmem.corpus.types import Dialogue, Utterance
from convmem.errors import AudioError, ManifestError

SPLITS = ("train", "dev", "test")
COLUMNS = ("Utterance", "Speaker", "Emotion", "Dialogue_ID", "Utterance_ID", "StartTime", "EndTime")
LABELS_7 = {"neutral": "neu", "joy": "hap", "sadness": "sad", "anger": "ang",
            "surprise": "sur", "fear": "fea", "disgust": "dis"}
LABELS_4 = {k: (v if v in ("neu", "hap", "sad", "ang") else None) for k, v in LABELS_7.items()}
# Folder names of MELD.Raw, tried after AUDIO_DIR/<split>.
RELEASE_AUDIO_DIRS = {"train": ("train_splits",), "dev": ("dev_splits_complete", "dev_splits"),
                      "test": ("output_repeated_splits_test", "test_splits")}
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")
_TIME = re.compile(r"^(\d{1,2}):(\d{2}):(\d{2})[,.](\d{1,3})$")


@dataclass
class MeldRow:
    split: str
    dialogue: int
    utterance: int
    speaker: str
    emotion: str | None
    text: str
    episode_start: float
    episode_end: float
    line: int


@dataclass
class MeldReport:
    rows: int = 0
    cp1252_lines: int = 0
    missing_audio: list[str] = field(default_factory=list)  # filled only with allow_missing

    def lines(self) -> list[str]:
        out = []
        if self.cp1252_lines:
            out.append(f"{self.cp1252_lines} CSV line(s) were not UTF-8 and were read as cp1252")
        if self.missing_audio:
            out.append(f"{len(self.missing_audio)} of {self.rows} rows have no audio and were left out "
                       f"(first: {', '.join(self.missing_audio[:5])})")
        return out


def parse_time(value: str, where: str) -> float:
    """``00:16:16,059`` (also ``0:05:52,435``, ``00:06:47,28``) → seconds."""
    m = _TIME.match(value.strip())
    if m is None:
        raise ManifestError(f"{where}: expected a time like 00:16:16,059, got {value!r}")
    h, mi, s, frac = m.groups()
    return int(h) * 3600 + int(mi) * 60 + int(s) + int(frac) / 10 ** len(frac)


def read_meld_csv(path: str | Path, split: str, labels: str = "4",
                  report: MeldReport | None = None) -> list[MeldRow]:
    """Rows of one MELD CSV; ManifestError names `path:line` and the column of a bad value."""
    path = Path(path)
    report = report if report is not None else MeldReport()
    mapping = _label_map(labels)
    if not path.is_file():
        raise ManifestError(f"{path}: MELD CSV not found")
    text = _decode_lines(path.read_bytes(), report)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise ManifestError(f"{path}:1: missing column(s) {', '.join(missing)} (header: {', '.join(header)})")
    reader.fieldnames = header
    rows: list[MeldRow] = []
    seen: dict[tuple[int, int], int] = {}
    line = 1
    for rec in reader:
        line = reader.line_num
        where = f"{path}:{line}"
        if None in rec or any(rec.get(c) is None for c in COLUMNS):
            raise ManifestError(f"{where}: expected {len(header)} columns, found a different number")
        emo = rec["Emotion"].strip().lower()
        if emo not in mapping:
            raise ManifestError(f"{where}: column Emotion: unknown label {rec['Emotion']!r} "
                                f"(known: {', '.join(LABELS_7)})")
        did = _int(rec["Dialogue_ID"], f"{where}: column Dialogue_ID")
        uid = _int(rec["Utterance_ID"], f"{where}: column Utterance_ID")
        if (did, uid) in seen:
            raise ManifestError(f"{where}: Dialogue_ID {did}, Utterance_ID {uid} repeats line {seen[did, uid]}")
        seen[did, uid] = line
        speaker = rec["Speaker"].strip()
        if not speaker:
            raise ManifestError(f"{where}: column Speaker: empty")
        start = parse_time(rec["StartTime"], f"{where}: column StartTime")
        end = parse_time(rec["EndTime"], f"{where}: column EndTime")
        rows.append(MeldRow(split, did, uid, speaker, mapping[emo], rec["Utterance"].strip(), start, end, line))
    if not rows:
        raise ManifestError(f"{path}: no data rows")
    report.rows += len(rows)
    return rows


def load_meld(csv_dir: str | Path, audio_dir: str | Path, splits: tuple[str, ...] = SPLITS,
              labels: str = "4", allow_missing: bool = False,
              report: MeldReport | None = None, progress: bool = False) -> list[Dialogue]:
    """Dialogues of the MELD `splits` (train, dev, test order), utterances in Utterance_ID order.

    `audio_dir` holds one folder per split: `<split>/` or the MELD.Raw names (train_splits,
    dev_splits_complete, output_repeated_splits_test); with a single split it may hold the files itself.
    """
    from tqdm import tqdm

    csv_dir, audio_dir = Path(csv_dir), Path(audio_dir)
    report = report if report is not None else MeldReport()
    if not audio_dir.is_dir():
        raise ManifestError(f"{audio_dir}: MELD audio folder not found")
    bad = [s for s in splits if s not in SPLITS]
    if bad:
        raise ManifestError(f"unknown MELD split(s) {bad} (known: {', '.join(SPLITS)})")
    dialogues: list[Dialogue] = []
    missing: list[str] = []
    for split in splits:
        rows = read_meld_csv(csv_dir / f"{split}_sent_emo.csv", split, labels, report)
        folder = _split_audio_dir(audio_dir, split, single=len(splits) == 1)
        by_dialogue: dict[int, list[MeldRow]] = {}
        for r in rows:
            by_dialogue.setdefault(r.dialogue, []).append(r)
        for did in tqdm(sorted(by_dialogue), desc=f"meld {split}", unit="dlg", disable=not progress):
            d = _dialogue(split, did, sorted(by_dialogue[did], key=lambda r: r.utterance), folder, missing)
            if d is not None:
                dialogues.append(d)
    if missing and not allow_missing:
        raise ManifestError(
            f"{len(missing)} of {report.rows} MELD rows have no audio file dia{{D}}_utt{{U}}"
            f"{'/'.join(AUDIO_SUFFIXES)} under {audio_dir} (first: {', '.join(missing[:5])}); "
            f"add the files or pass --allow-missing to leave those rows out"
        )
    report.missing_audio = missing
    if not dialogues:
        raise ManifestError(f"{audio_dir}: no MELD row has audio")
    return dialogues


def _dialogue(split: str, did: int, rows: list[MeldRow], folder: Path, missing: list[str]) -> Dialogue | None:
    dialogue_id = f"{split}_dia{did}"
    utts, cursor = [], 0.0
    for r in rows:
        audio = _find_audio(folder, f"dia{did}_utt{r.utterance}")
        if audio is None:
            missing.append(f"{dialogue_id}_utt{r.utterance}")
            continue
        duration = audio_info(audio).duration
        utts.append(Utterance(id=f"{dialogue_id}_utt{r.utterance}", speaker=r.speaker, start=cursor,
                              end=cursor + duration, emotion=r.emotion, audio=audio, text=r.text))
        cursor += duration
    return Dialogue(dialogue_id, split, utts) if utts else None


def _find_audio(folder: Path, stem: str) -> Path | None:
    for suffix in AUDIO_SUFFIXES:
        p = folder / f"{stem}{suffix}"
        if p.is_file():
            return p
    video = folder / f"{stem}.mp4"
    if video.is_file():
        raise AudioError(
            f"{video}: MELD ships mp4; convert to 16 kHz mono wav first, e.g. "
            f"`ffmpeg -i {video.name} -ac 1 -ar 16000 {stem}.wav` for every file"
        )
    return None


def _split_audio_dir(audio_dir: Path, split: str, single: bool) -> Path:
    tried = [audio_dir / split] + [audio_dir / n for n in RELEASE_AUDIO_DIRS[split]]
    for p in tried:
        if p.is_dir():
            return p
    if single:
        return audio_dir
    raise ManifestError(f"{audio_dir}: no audio folder for split {split!r} (tried: "
                        f"{', '.join(p.name for p in tried)})")


def _label_map(labels: str) -> dict[str, str | None]:
    if labels == "4":
        return LABELS_4
    if labels == "7":
        return LABELS_7
    raise ManifestError(f"labels must be '4' or '7', got {labels!r}")


def _int(value: str, where: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise ManifestError(f"{where}: expected an integer, got {value!r}") from None


def _decode_lines(data: bytes, report: MeldReport) -> str:
    # Decode line by line: one cp1252 quote must not turn the whole file into mojibake.
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    out = []
    for raw in data.splitlines(keepends=True):
        try:
            out.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            report.cp1252_lines += 1
            out.append(raw.decode("cp1252", errors="replace"))
    return "".join(out)
