"""RAVDESS pseudo-conversations: two actors alternating turns, emotions with inertia.

RAVDESS (Livingstone & Russo, 2018) holds isolated acted sentences, not conversations. We
build *pseudo*-conversations (`convmem.corpus.pseudo_conversations`, shared with nEMO and
TurEV-DB) and every report that uses them must say so. What is RAVDESS's own:

- the layout `Actor_XX/03-01-EE-II-SS-RR-AA.{wav,flac}` and its name fields, checked field by
  field; video (modality 01/02) and song (channel 02) files are skipped and reported;
- a session is one male (odd) and one female (even) actor, paired 1+2, 3+4, ... and named
  `ravdess_01-02`; its random stream is keyed by the seed and the two actor numbers; an actor
  whose partner is missing is reported and not used;
- neutral and calm → "neu", happy → "hap", sad → "sad", angry → "ang"; fearful, disgust and
  surprised stay in the dialogue as unscored context turns (or become fea/dis/sur with
  `labels="7"`); the text is the statement ("Kids are talking by the door", ...).

The plan (who says which clip when) depends only on file names, header lengths and the seed,
never on decoded samples, so the 48 kHz original release (`Actor_XX/03-01-EE-II-SS-RR-AA.wav`,
some files stereo) and a 16 kHz FLAC copy give the same dialogues. Turn lengths are counted in
16 kHz samples (`round(frames * 16000 / rate)`), so times agree to the sample whenever the copy
was made with rounding, and each clip is cut or zero-padded to exactly that length.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from convmem.audio.io import SAMPLE_RATE, audio_info
from convmem.corpus.pseudo_conversations import (
    OWNED_FILES,
    PlannedDialogue,
    PseudoConversationConfig,
    PseudoReport,
    Session,
    build_corpus,
    plan_sessions,
)
from convmem.corpus.types import Dialogue
from convmem.errors import ManifestError
from convmem.staging import check_output_dir

# RAVDESS emotion code → the category that carries inertia (neutral and calm merged).
_CATEGORY = {1: "neu", 2: "neu", 3: "hap", 4: "sad", 5: "ang", 6: "fea", 7: "dis", 8: "sur"}
_STATEMENTS = {1: "Kids are talking by the door", 2: "Dogs are sitting by the door"}
_NAME = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")
_ACTOR_DIR = re.compile(r"^Actor_(\d\d)$")
AUDIO_SUFFIXES = (".wav", ".flac")

# The builder's settings and report are the shared ones; the names are kept for callers.
RavdessConfig = PseudoConversationConfig
RavdessReport = PseudoReport


@dataclass(frozen=True)
class Clip:
    """One RAVDESS file: parsed name fields and its length in 16 kHz samples."""

    path: Path
    stem: str
    actor: int
    emotion_code: int
    statement: int
    samples: int

    @property
    def category(self) -> str:
        return _CATEGORY[self.emotion_code]

    @property
    def speaker(self) -> str:
        return speaker_name(self.actor)

    @property
    def utterance_id(self) -> str:
        return f"ravdess_{self.stem}"

    @property
    def text(self) -> str:
        return _STATEMENTS[self.statement]


def scan_clips(src: str | Path, report: RavdessReport | None = None) -> dict[int, list[Clip]]:
    """Find `Actor_XX/03-01-EE-II-SS-RR-AA.{wav,flac}` under `src`; returns actor → clips sorted by name."""
    src = Path(src)
    report = report if report is not None else RavdessReport()
    if not src.is_dir():
        raise ManifestError(f"{src}: RAVDESS folder not found")
    actor_dirs = sorted(p for p in src.iterdir() if p.is_dir() and _ACTOR_DIR.match(p.name))
    if not actor_dirs:
        raise ManifestError(f"{src}: no Actor_XX folders (expected the RAVDESS layout Actor_01/03-01-...wav)")
    actors: dict[int, list[Clip]] = {}
    for adir in actor_dirs:
        actor = int(_ACTOR_DIR.match(adir.name).group(1))
        seen: dict[str, Path] = {}
        for f in sorted(adir.iterdir()):
            if f.name.startswith(".") or not f.is_file():
                continue
            clip = _parse_clip(f, actor, report)
            if clip is None:
                continue
            if clip.stem in seen:
                raise ManifestError(f"{f}: clip {clip.stem} appears twice ({seen[clip.stem].name} and {f.name})")
            seen[clip.stem] = f
            actors.setdefault(actor, []).append(clip)
    if not actors:
        raise ManifestError(f"{src}: no RAVDESS speech clips (03-01-*.wav or .flac) in the Actor_XX folders")
    report.clips = sum(len(v) for v in actors.values())
    return actors


def _parse_clip(f: Path, actor: int, report: RavdessReport) -> Clip | None:
    m = _NAME.match(f.stem)
    if m is None:
        if f.suffix.lower() in AUDIO_SUFFIXES + (".mp4",):
            raise ManifestError(f"{f}: not a RAVDESS file name (expected MM-VV-EE-II-SS-RR-AA, e.g. 03-01-05-02-01-01-03)")
        return None  # README, checksums, ...
    modality, channel, emo, intensity, statement, rep, name_actor = (int(g) for g in m.groups())
    if modality != 3 or channel != 1 or f.suffix.lower() not in AUDIO_SUFFIXES:
        report.skipped_files.append(f.name)  # video (01/02) or song (channel 02)
        return None
    bad = None
    if emo not in _CATEGORY:
        bad = f"emotion code {emo:02d} (expected 01-08)"
    elif intensity not in (1, 2) or (emo == 1 and intensity == 2):
        bad = f"intensity {intensity:02d} (expected 01, or 02 for non-neutral)"
    elif statement not in _STATEMENTS:
        bad = f"statement {statement:02d} (expected 01 or 02)"
    elif rep not in (1, 2):
        bad = f"repetition {rep:02d} (expected 01 or 02)"
    elif name_actor != actor:
        bad = f"actor {name_actor:02d} in the name but the file is in Actor_{actor:02d}"
    if bad:
        raise ManifestError(f"{f}: bad RAVDESS file name field: {bad}")
    info = audio_info(f)
    samples = int(round(info.frames * SAMPLE_RATE / info.sample_rate))
    return Clip(path=f, stem=f.stem, actor=actor, emotion_code=emo, statement=statement, samples=samples)


def session_name(male: int, female: int) -> str:
    return f"ravdess_{male:02d}-{female:02d}"


def speaker_name(actor: int) -> str:
    return f"ravdess_A{actor:02d}"


def plan_dialogues(actors: dict[int, list[Clip]], config: RavdessConfig = RavdessConfig(),
                   report: RavdessReport | None = None) -> list[PlannedDialogue]:
    """Pair actors into sessions (odd male + the next even female) and plan their dialogues.

    Deterministic in (clip names, clip lengths, config.seed); each session has its own random
    stream, keyed by the seed and the two actor numbers, so adding or removing one actor pair
    never changes another session's dialogues.
    """
    report = report if report is not None else RavdessReport()
    sessions = [Session(session_name(m, m + 1), (speaker_name(m), speaker_name(m + 1)), (m, m + 1))
                for m in sorted(a for a in actors if a % 2 == 1) if m + 1 in actors]
    paired = {a for s in sessions for a in s.rng_key}
    report.unpaired.extend(sorted(a for a in actors if a not in paired))
    report.unpaired_clips += sum(len(actors[a]) for a in actors if a not in paired)
    if not sessions:
        raise ManifestError(f"no male/female actor pair (Actor_01+Actor_02, ...) found among actors {sorted(actors)}")
    clips = {speaker_name(a): v for a, v in actors.items()}
    return plan_sessions(sessions, clips, config, report)


def build_ravdess(src: str | Path, out: str | Path, config: RavdessConfig = RavdessConfig(),
                  force: bool = False, progress: bool = True) -> tuple[list[Dialogue], RavdessReport]:
    """Build `out/manifest.jsonl` + `out/audio/<dialogue>.wav` from a RAVDESS folder, all or nothing.

    Everything is built in a temporary sibling folder and renamed onto `out` at the end, so an
    error or interrupt never leaves a half-written corpus. An existing non-empty `out` is only
    replaced with `force=True`, and only when it holds nothing but OWNED_FILES (convmem.staging).
    """
    out = Path(out)
    check_output_dir(out, force, OWNED_FILES)
    report = RavdessReport()
    plans = plan_dialogues(scan_clips(src, report), config, report)
    return build_corpus(plans, out, config.labels, force, progress, desc="ravdess dialogues"), report
