"""RAVDESS pseudo-conversations: two actors alternating turns, emotions with inertia.

RAVDESS (Livingstone & Russo, 2018) holds isolated acted sentences, not conversations. We
build *pseudo*-conversations and every report that uses them must say so:

- a session is one male (odd) and one female (even) actor, paired 1+2, 3+4, ... ;
- each session's clips are dealt into dialogues of about `turns_per_dialogue` turns in which the
  two actors strictly alternate; every clip is used exactly once;
- a turn's emotion is sticky: the speaker keeps their previous emotion with probability
  `p_stay`, else takes the other speaker's current emotion with probability `p_contagion`,
  else draws from what is left in their pool (weighted by how many clips remain);
- neutral and calm → "neu", happy → "hap", sad → "sad", angry → "ang"; fearful, disgust and
  surprised stay in the dialogue as unscored context turns (or become fea/dis/sur with
  `labels="7"`);
- the dialogue audio is the clips joined with short seeded random pauses, written at 16 kHz.

The plan (who says which clip when) depends only on file names, header lengths and the seed,
never on decoded samples, so the 48 kHz original release (`Actor_XX/03-01-EE-II-SS-RR-AA.wav`,
some files stereo) and a 16 kHz FLAC copy give the same dialogues. Turn lengths are counted in
16 kHz samples (`round(frames * 16000 / rate)`), so times agree to the sample whenever the copy
was made with rounding, and each clip is cut or zero-padded to exactly that length.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from convmem.audio.io import SAMPLE_RATE, audio_info, load_audio, write_wav
from convmem.corpus.types import EMOTIONS, EMOTIONS_7, Dialogue, Utterance
from convmem.errors import ManifestError
from convmem.staging import check_output_dir, staged_directory

# RAVDESS emotion code → the category that carries inertia (neutral and calm merged).
_CATEGORY = {1: "neu", 2: "neu", 3: "hap", 4: "sad", 5: "ang", 6: "fea", 7: "dis", 8: "sur"}
_STATEMENTS = {1: "Kids are talking by the door", 2: "Dogs are sitting by the door"}
_NAME = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")
_ACTOR_DIR = re.compile(r"^Actor_(\d\d)$")
AUDIO_SUFFIXES = (".wav", ".flac")
# what `convmem corpus` writes into OUT: what --force may replace (convmem.staging)
OWNED_FILES = ("manifest.jsonl", "summary.json", "audio/*.wav")


@dataclass(frozen=True)
class RavdessConfig:
    """How pseudo-conversations are built. Defaults are corpus-agnostic, not tuned to any actor."""

    seed: int = 0
    turns_per_dialogue: int = 30
    p_stay: float = 0.6
    p_contagion: float = 0.2
    pause_min_s: float = 0.15
    pause_max_s: float = 0.6
    labels: str = "4"  # "4": fea/dis/sur are unscored context; "7": they are scored too

    def __post_init__(self) -> None:
        if self.turns_per_dialogue < 2:
            raise ManifestError(f"turns_per_dialogue must be >= 2, got {self.turns_per_dialogue}")
        if not (0 <= self.p_stay <= 1 and 0 <= self.p_contagion <= 1):
            raise ManifestError("p_stay and p_contagion must lie in [0, 1]")
        if not 0 <= self.pause_min_s <= self.pause_max_s:
            raise ManifestError(f"need 0 <= pause_min_s <= pause_max_s, got {self.pause_min_s}, {self.pause_max_s}")
        if self.labels not in ("4", "7"):
            raise ManifestError(f"labels must be '4' or '7', got {self.labels!r}")


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


@dataclass
class RavdessReport:
    """What the builder skipped or could not use (the CLI prints it)."""

    clips: int = 0
    skipped_files: list[str] = field(default_factory=list)  # other modality/channel (video, song)
    unpaired_actors: list[int] = field(default_factory=list)
    unused_clips: int = 0  # left over when the two actors of a session have unequal counts

    def lines(self) -> list[str]:
        out = []
        if self.skipped_files:
            out.append(f"skipped {len(self.skipped_files)} non-speech/non-audio files (first: {self.skipped_files[:3]})")
        if self.unpaired_actors:
            out.append(f"actors without a partner of the other sex, not used: {self.unpaired_actors}")
        if self.unused_clips:
            out.append(f"{self.unused_clips} clips left unused because paired actors have unequal clip counts")
        return out


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


@dataclass(frozen=True)
class PlannedTurn:
    clip: Clip
    start_sample: int  # in the 16 kHz dialogue audio


@dataclass(frozen=True)
class PlannedDialogue:
    dialogue_id: str
    session: str
    turns: tuple[PlannedTurn, ...]

    @property
    def samples(self) -> int:
        last = self.turns[-1]
        return last.start_sample + last.clip.samples


def session_name(male: int, female: int) -> str:
    return f"ravdess_{male:02d}-{female:02d}"


def speaker_name(actor: int) -> str:
    return f"ravdess_A{actor:02d}"


def plan_dialogues(actors: dict[int, list[Clip]], config: RavdessConfig = RavdessConfig(),
                   report: RavdessReport | None = None) -> list[PlannedDialogue]:
    """Pair actors into sessions and deal each session's clips into alternating sticky dialogues.

    Deterministic in (clip names, clip lengths, config.seed); each session has its own random
    stream, so adding or removing one actor pair never changes another session's dialogues.
    """
    report = report if report is not None else RavdessReport()
    plans: list[PlannedDialogue] = []
    for male in sorted(a for a in actors if a % 2 == 1):
        female = male + 1
        if female not in actors:
            report.unpaired_actors.append(male)
            continue
        plans.extend(_plan_session(male, female, actors[male], actors[female], config, report))
    report.unpaired_actors.extend(a for a in sorted(actors) if a % 2 == 0 and a - 1 not in actors)
    report.unpaired_actors.sort()
    if not plans:
        raise ManifestError(f"no male/female actor pair (Actor_01+Actor_02, ...) found among actors {sorted(actors)}")
    return plans


def _plan_session(male: int, female: int, male_clips: list[Clip], female_clips: list[Clip],
                  config: RavdessConfig, report: RavdessReport) -> list[PlannedDialogue]:
    rng = np.random.default_rng([config.seed, male, female])
    pools = {male: _shuffled_pools(male_clips, rng), female: _shuffled_pools(female_clips, rng)}
    per_speaker = min(len(male_clips), len(female_clips))
    report.unused_clips += len(male_clips) + len(female_clips) - 2 * per_speaker
    n_dialogues = max(1, round(2 * per_speaker / config.turns_per_dialogue))
    # Near-equal even lengths: both actors speak the same number of turns in every dialogue.
    pairs = [per_speaker // n_dialogues + (i < per_speaker % n_dialogues) for i in range(n_dialogues)]
    session = session_name(male, female)
    plans = []
    for k, n_pairs in enumerate(pairs, start=1):
        if n_pairs == 0:
            continue
        first = male if rng.random() < 0.5 else female
        order = [first, female if first == male else male] * n_pairs
        current: dict[int, str | None] = {male: None, female: None}
        turns, cursor = [], 0
        for i, spk in enumerate(order):
            other_cat = current[order[i - 1]] if i else None
            cat = _next_category(pools[spk], current[spk], other_cat, config, rng)
            current[spk] = cat
            clip = pools[spk][cat].pop()
            if i:
                cursor += int(round(rng.uniform(config.pause_min_s, config.pause_max_s) * SAMPLE_RATE))
            turns.append(PlannedTurn(clip=clip, start_sample=cursor))
            cursor += clip.samples
        plans.append(PlannedDialogue(dialogue_id=f"{session}_d{k:02d}", session=session, turns=tuple(turns)))
    return plans


def _shuffled_pools(clips: list[Clip], rng: np.random.Generator) -> dict[str, list[Clip]]:
    pools: dict[str, list[Clip]] = {}
    for c in sorted(clips, key=lambda c: c.stem):
        pools.setdefault(c.category, []).append(c)
    for cat in sorted(pools):
        rng.shuffle(pools[cat])
    return pools


def _next_category(pool: dict[str, list[Clip]], own: str | None, other: str | None,
                   config: RavdessConfig, rng: np.random.Generator) -> str:
    available = sorted(c for c, v in pool.items() if v)
    if own in available and rng.random() < config.p_stay:
        return own
    if other in available and rng.random() < config.p_contagion:
        return other
    weights = np.array([len(pool[c]) for c in available], dtype=np.float64)
    return available[int(rng.choice(len(available), p=weights / weights.sum()))]


def to_dialogues(plans: list[PlannedDialogue], audio_dir: Path, labels: str = "4") -> list[Dialogue]:
    """Manifest records for `plans`; dialogue audio is `audio_dir/<dialogue_id>.wav`."""
    allowed = EMOTIONS if labels == "4" else EMOTIONS_7
    out = []
    for p in plans:
        utts = [
            Utterance(
                id=f"ravdess_{t.clip.stem}",
                speaker=speaker_name(t.clip.actor),
                start=t.start_sample / SAMPLE_RATE,
                end=(t.start_sample + t.clip.samples) / SAMPLE_RATE,
                emotion=t.clip.category if t.clip.category in allowed else None,
                text=_STATEMENTS[t.clip.statement],
            )
            for t in p.turns
        ]
        out.append(Dialogue(p.dialogue_id, p.session, utts, audio=audio_dir / f"{p.dialogue_id}.wav"))
    return out


def render_dialogue(plan: PlannedDialogue, path: Path) -> Path:
    """Join the clips of `plan` with silence at their planned sample offsets; write 16 kHz wav."""
    wave = np.zeros(plan.samples, dtype=np.float32)
    for t in plan.turns:
        clip = load_audio(t.clip.path, SAMPLE_RATE)[: t.clip.samples]
        wave[t.start_sample : t.start_sample + clip.size] = clip  # a short resampler output stays zero-padded
    return write_wav(path, wave, SAMPLE_RATE)


def render_corpus(plans: list[PlannedDialogue], folder: Path, labels: str = "4",
                  progress: bool = True) -> list[Dialogue]:
    """Write `folder/audio/<dialogue>.wav` and `folder/manifest.jsonl` for `plans`; returns the records."""
    from tqdm import tqdm

    from convmem.corpus.manifest import write_manifest

    folder = Path(folder)
    for p in tqdm(plans, desc="ravdess dialogues", unit="dlg", disable=not progress):
        render_dialogue(p, folder / "audio" / f"{p.dialogue_id}.wav")
    dialogues = to_dialogues(plans, folder / "audio", labels)
    write_manifest(folder / "manifest.jsonl", dialogues, labels=EMOTIONS if labels == "4" else EMOTIONS_7)
    return dialogues


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
    with staged_directory(out, force, OWNED_FILES) as stage:
        render_corpus(plans, stage, config.labels, progress)
    return to_dialogues(plans, out / "audio", config.labels), report
