"""Acted-clip corpora described by a `metadata.csv` (nEMO, TurEV-DB) → pseudo-conversation plans.

Such a corpus is a folder with `metadata.csv`, one row a clip: its `file` (relative to the
folder), `speaker`, `emotion` and, per corpus, a transcript column, a `gender` column and an
emotion-code column. `MetadataSpec` says which; `plan_metadata_corpus` reads the table, checks
every row, pairs the speakers (`pseudo_conversations.pair_speakers`) and plans the dialogues.

Bad input is an error before anything is written, naming `metadata.csv:line` and the value: a
missing metadata.csv or column, a row whose file is missing or unreadable, an unknown emotion,
an emotion code that contradicts the emotion, a speaker whose gender changes, a file listed
twice. Clip lengths come from the audio headers (not the table's rounded durations), in 16 kHz
samples, so the plan is the same for a 16 kHz copy and the original release.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

from convmem.audio.io import SAMPLE_RATE, audio_info
from convmem.corpus.pseudo_conversations import (
    LABEL_SETS,
    Pairing,
    PlannedDialogue,
    PseudoConversationConfig,
    PseudoReport,
    SourceClip,
    pair_speakers,
    plan_sessions,
)
from convmem.errors import AudioError, ManifestError

AUDIO_SUFFIXES = (".wav", ".flac")
GENDERS = ("female", "male")
_SPEAKER = re.compile(r"^[A-Za-z0-9]+$")


@dataclass(frozen=True)
class MetadataSpec:
    """What one corpus's metadata.csv holds and how its emotions map.

    corpus: the id prefix (`nemo` → sessions `nemo_EB0-KS0`, speakers `nemo_EB0`, utterances
        `nemo_<file stem>`); title: the corpus as messages name it.
    categories: emotion value (compared lower-case) → the category that carries inertia; those
        outside the scored label set become unscored context turns.
    codes: optional `code_column` value → the emotion value it must agree with.
    """

    corpus: str
    title: str
    categories: dict[str, str]
    text_column: str | None = None
    gender_column: str | None = None  # used when the header has it
    code_column: str | None = None
    codes: dict[str, str] = field(default_factory=dict)
    note: str = ""  # what the emotion mapping assumes, for summary.json
    clips_are: str = "sentences"  # what one clip holds, for summary.json's note

    def emotion_map(self, labels: str) -> dict[str, str | None]:
        """Raw emotion → manifest label under `labels` ("4"/"7"); None = unscored context turn."""
        allowed = LABEL_SETS[labels]
        return {raw: (cat if cat in allowed else None) for raw, cat in self.categories.items()}


@dataclass
class MetadataCorpus:
    """The checked table: clips by manifest speaker id, and each raw speaker id's gender (or None)."""

    clips: dict[str, list[SourceClip]]
    genders: dict[str, str | None]


def read_metadata(src: str | Path, spec: MetadataSpec) -> MetadataCorpus:
    """Read and check `src/metadata.csv`; ManifestError/AudioError name the file, line and value."""
    src = Path(src)
    if not src.is_dir():
        raise ManifestError(f"{src}: {spec.title} folder not found")
    path = src / "metadata.csv"
    if not path.is_file():
        raise ManifestError(f"{path}: metadata.csv not found (a {spec.title} folder lists its clips there)")
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh)
            header = reader.fieldnames or []
            required = ["file", "speaker", "emotion"] + [c for c in (spec.text_column,) if c]
            missing = [c for c in required if c not in header]
            if missing:
                raise ManifestError(f"{path}:1: missing column(s) {', '.join(missing)} (header: {', '.join(header)})")
            use_gender = spec.gender_column in header if spec.gender_column else False
            use_code = spec.code_column in header if spec.code_column else False
            rows = [(reader.line_num, row) for row in reader]
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if not rows:
        raise ManifestError(f"{path}: no clips (only a header)")
    clips: dict[str, list[SourceClip]] = {}
    genders: dict[str, str | None] = {}
    gender_line: dict[str, int] = {}
    seen: dict[str, int] = {}
    for line, row in rows:
        where = f"{path}:{line}"
        clip = _clip(src, row, spec, where, use_code)
        if clip.utterance_id in seen:
            raise ManifestError(f"{where}: file {row['file']!r} repeats line {seen[clip.utterance_id]} "
                                "(each clip may be listed once)")
        seen[clip.utterance_id] = line
        raw = clip.speaker.removeprefix(f"{spec.corpus}_")
        gender = _gender(row, spec.gender_column, where) if use_gender else None
        if raw in genders and genders[raw] != gender:
            raise ManifestError(f"{where}: speaker {raw} is {gender} here but {genders[raw]} on line {gender_line[raw]}")
        genders.setdefault(raw, gender)
        gender_line.setdefault(raw, line)
        clips.setdefault(clip.speaker, []).append(clip)
    return MetadataCorpus(clips, genders)


def _clip(src: Path, row: dict, spec: MetadataSpec, where: str, use_code: bool) -> SourceClip:
    if None in row or any(v is None for v in row.values()):
        raise ManifestError(f"{where}: wrong number of columns")
    rel = row["file"].strip()
    if not rel:
        raise ManifestError(f"{where}: column file: empty")
    f = src / rel
    if Path(rel).suffix.lower() not in AUDIO_SUFFIXES:
        raise ManifestError(f"{where}: column file: {rel!r} is not a .wav or .flac file")
    if not f.is_file():
        raise ManifestError(f"{where}: column file: {rel!r} not found ({f})")
    speaker = row["speaker"].strip()
    if not _SPEAKER.match(speaker):
        raise ManifestError(f"{where}: column speaker: expected letters and digits, got {speaker!r}")
    emotion = row["emotion"].strip().lower()
    if emotion not in spec.categories:
        raise ManifestError(f"{where}: column emotion: unknown {spec.title} emotion {row['emotion']!r} "
                            f"(expected one of {', '.join(sorted(spec.categories))})")
    if use_code:
        code = row[spec.code_column].strip().lower()
        if spec.codes.get(code) != emotion:
            raise ManifestError(f"{where}: column {spec.code_column}: {row[spec.code_column]!r} does not agree "
                                f"with emotion {row['emotion']!r} (codes: "
                                f"{', '.join(f'{c} {e}' for c, e in spec.codes.items())})")
    try:
        info = audio_info(f)
    except AudioError as exc:
        raise AudioError(f"{where}: {exc}") from None
    text = row[spec.text_column].strip() if spec.text_column else ""
    return SourceClip(path=f, stem=f.stem, speaker=f"{spec.corpus}_{speaker}", category=spec.categories[emotion],
                      samples=int(round(info.frames * SAMPLE_RATE / info.sample_rate)),
                      utterance_id=f"{spec.corpus}_{f.stem}", text=text or None)


def _gender(row: dict, column: str, where: str) -> str:
    value = row[column].strip().lower()
    if value not in GENDERS:
        raise ManifestError(f"{where}: column {column}: expected female or male, got {row[column]!r}")
    return value


def plan_metadata_corpus(src: str | Path, spec: MetadataSpec, config: PseudoConversationConfig,
                         report: PseudoReport | None = None) -> tuple[list[PlannedDialogue], Pairing]:
    """Read `src/metadata.csv`, pair its speakers into sessions and plan every session's dialogues.

    Speakers left without a partner (an odd count, or unequal genders) are reported, not used.
    Raises ManifestError when no session can be formed.
    """
    report = report if report is not None else PseudoReport()
    table = read_metadata(src, spec)
    report.clips = sum(len(v) for v in table.clips.values())
    pairing = pair_speakers(spec.corpus, table.genders)
    report.unpaired.extend(pairing.unpaired)
    report.unpaired_clips += sum(len(table.clips[f"{spec.corpus}_{s}"]) for s in pairing.unpaired)
    if not pairing.sessions:
        raise ManifestError(f"{Path(src) / 'metadata.csv'}: no pair of speakers to make a session "
                            f"({pairing.rule}; speakers: {', '.join(sorted(table.genders))})")
    return plan_sessions(pairing.sessions, table.clips, config, report), pairing


def summary_extra(spec: MetadataSpec, pairing: Pairing, labels: str) -> dict:
    """What summary.json records about the mapping and the sessions (beside the counts)."""
    out: dict = {"labels": labels, "emotion_map": spec.emotion_map(labels)}
    if spec.note:
        out["emotion_map_note"] = spec.note
    out["pairing"] = pairing.rule
    out["session_speakers"] = {s.name: list(s.speakers) for s in pairing.sessions}
    if pairing.unpaired:
        out["unpaired_speakers"] = [f"{spec.corpus}_{s}" for s in pairing.unpaired]
    return out
