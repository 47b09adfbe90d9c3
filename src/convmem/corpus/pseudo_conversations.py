"""Pseudo-conversations from isolated acted clips: the part every such corpus shares.

RAVDESS, nEMO and TurEV-DB hold isolated acted clips, not conversations. A corpus loader finds its
clips and pairs its speakers into sessions; this module does the rest, the same way for all three,
so a figure built on one means the same on another:

- a session is two speakers; each speaker belongs to exactly one session;
- each session's clips are dealt into dialogues of about `turns_per_dialogue` turns in which the
  two speakers alternate; every clip of a paired speaker is used exactly once. When one speaker has
  more clips than the other, the surplus becomes follow-up turns (the same speaker again, right
  after one of their alternating turns, at seeded places), so no clip is dropped;
- a turn's emotion is sticky: the speaker keeps their previous emotion with probability `p_stay`,
  else takes the other speaker's current emotion with probability `p_contagion`, else draws from
  what is left in their pool (weighted by how many clips remain);
- emotions outside the scored label set stay in the dialogue as unscored context turns
  (`emotion: null`);
- the dialogue audio is the clips joined with short seeded random pauses, written at 16 kHz.

The plan depends only on clip names, header lengths and the seed, never on decoded samples, so a
48 kHz original and a 16 kHz copy give the same dialogues. Each session has its own random stream
(keyed by the seed and the session's speakers), so adding or removing one pair never changes
another session's dialogues. The corpus is written all or nothing (`convmem.staging.staged_directory`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from convmem.audio.io import SAMPLE_RATE, load_audio, write_wav
from convmem.corpus.types import EMOTIONS, EMOTIONS_7, Dialogue, Utterance
from convmem.errors import ManifestError
from convmem.staging import staged_directory

LABEL_SETS = {"4": EMOTIONS, "7": EMOTIONS_7}


@dataclass(frozen=True)
class PseudoConversationConfig:
    """How pseudo-conversations are built. Defaults are corpus-agnostic, not tuned to any speaker."""

    seed: int = 0
    turns_per_dialogue: int = 30
    p_stay: float = 0.6
    p_contagion: float = 0.2
    pause_min_s: float = 0.15
    pause_max_s: float = 0.6
    labels: str = "4"  # "4": other emotions are unscored context; "7": fea/dis/sur are scored too

    def __post_init__(self) -> None:
        if self.turns_per_dialogue < 2:
            raise ManifestError(f"turns_per_dialogue must be >= 2, got {self.turns_per_dialogue}")
        if not (0 <= self.p_stay <= 1 and 0 <= self.p_contagion <= 1):
            raise ManifestError("p_stay and p_contagion must lie in [0, 1]")
        if not 0 <= self.pause_min_s <= self.pause_max_s:
            raise ManifestError(f"need 0 <= pause_min_s <= pause_max_s, got {self.pause_min_s}, {self.pause_max_s}")
        if self.labels not in LABEL_SETS:
            raise ManifestError(f"labels must be '4' or '7', got {self.labels!r}")


class TurnClip(Protocol):
    """What the planner needs of a clip (RAVDESS's Clip and `SourceClip` both have it)."""

    path: Path
    stem: str  # unique within its speaker; the order clips are pooled in
    samples: int  # length in 16 kHz samples

    @property
    def speaker(self) -> str: ...  # the manifest speaker id, prefixed by corpus
    @property
    def category(self) -> str: ...  # the emotion that carries inertia (neu, hap, ..., fea, sur)
    @property
    def utterance_id(self) -> str: ...
    @property
    def text(self) -> str | None: ...


@dataclass(frozen=True)
class SourceClip:
    """One clip of a corpus described by a metadata table (nEMO, TurEV-DB)."""

    path: Path
    stem: str
    speaker: str
    category: str
    samples: int
    utterance_id: str
    text: str | None = None


@dataclass(frozen=True)
class Session:
    """Two speakers (manifest ids) and the numbers that key the session's random stream (after the seed)."""

    name: str
    speakers: tuple[str, str]
    rng_key: tuple[int, ...]


@dataclass
class PseudoReport:
    """What the builder skipped or could not use (the CLI prints `lines()`, summary.json keeps them)."""

    clips: int = 0
    skipped_files: list[str] = field(default_factory=list)  # other modality/channel (video, song)
    unpaired: list = field(default_factory=list)  # speakers without a partner: their clips are not used
    unpaired_clips: int = 0
    follow_up_turns: int = 0  # surplus clips of the speaker with more clips in a session

    def lines(self) -> list[str]:
        out = []
        if self.skipped_files:
            out.append(f"skipped {len(self.skipped_files)} non-speech/non-audio files (first: {self.skipped_files[:3]})")
        if self.unpaired:
            out.append(f"speakers without a partner, not used ({self.unpaired_clips} clips): {self.unpaired}")
        if self.follow_up_turns:
            out.append(f"{self.follow_up_turns} follow-up turns (a speaker twice in a row) because paired "
                       "speakers have unequal clip counts")
        return out


@dataclass(frozen=True)
class PlannedTurn:
    clip: TurnClip
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


@dataclass(frozen=True)
class Pairing:
    """Sessions of two speakers each, the speakers left without a partner, and the rule in words."""

    sessions: list[Session]
    unpaired: list[str]
    rule: str


def pair_speakers(corpus: str, genders: dict[str, str | None]) -> Pairing:
    """Pair the raw speaker ids of `corpus` into sessions named `<corpus>_<a>-<b>`.

    With every gender known ("female"/"male"), each session is one female and one male speaker,
    paired in id order within each gender (like RAVDESS's actor pairs); without gender, speakers
    are paired in id order (1st+2nd, 3rd+4th, ...) and the rule says so. Speaker ids in sessions
    are `<corpus>_<id>`; the random stream of a session is keyed by a CRC of those ids, so it does
    not depend on which other speakers exist.
    """
    import zlib

    ids = sorted(genders)
    if ids and all(genders[s] is not None for s in ids):
        female = [s for s in ids if genders[s] == "female"]
        male = [s for s in ids if genders[s] == "male"]
        pairs = list(zip(female, male))
        unpaired = female[len(pairs):] + male[len(pairs):]
        rule = "one female + one male speaker per session, paired in id order within each gender (metadata gender)"
    else:
        pairs = list(zip(ids[0::2], ids[1::2]))
        unpaired = ids[2 * len(pairs):]
        rule = "speakers paired in id order (1st+2nd, 3rd+4th, ...): the metadata gives no gender"
    sessions = []
    for pair in pairs:
        a, b = sorted(pair)
        spk = (f"{corpus}_{a}", f"{corpus}_{b}")
        sessions.append(Session(f"{corpus}_{a}-{b}", spk, tuple(zlib.crc32(s.encode()) for s in spk)))
    return Pairing(sessions, sorted(unpaired), rule)


def plan_sessions(sessions: Sequence[Session], clips: dict[str, list], config: PseudoConversationConfig,
                  report: PseudoReport | None = None) -> list[PlannedDialogue]:
    """Deal each session's clips (`clips`: speaker id -> clips) into alternating sticky dialogues.

    Deterministic in (clip stems, clip lengths, config.seed, session.rng_key).
    Raises ManifestError when a session's speaker has no clips, or a speaker is in two sessions.
    """
    report = report if report is not None else PseudoReport()
    owner: dict[str, str] = {}
    for s in sessions:
        for spk in s.speakers:
            if spk in owner:
                raise ManifestError(f"speaker {spk} is in sessions {owner[spk]} and {s.name}: "
                                    "a speaker must belong to exactly one session")
            owner[spk] = s.name
            if not clips.get(spk):
                raise ManifestError(f"session {s.name}: speaker {spk} has no clips")
    plans: list[PlannedDialogue] = []
    for s in sessions:
        plans.extend(_plan_session(s, clips[s.speakers[0]], clips[s.speakers[1]], config, report))
    return plans


def _plan_session(session: Session, clips_a: list, clips_b: list, config: PseudoConversationConfig,
                  report: PseudoReport) -> list[PlannedDialogue]:
    a, b = session.speakers
    rng = np.random.default_rng([config.seed, *session.rng_key])
    pools = {a: _shuffled_pools(clips_a, rng), b: _shuffled_pools(clips_b, rng)}
    per_speaker = min(len(clips_a), len(clips_b))
    larger = a if len(clips_a) > len(clips_b) else b
    surplus = abs(len(clips_a) - len(clips_b))
    report.follow_up_turns += surplus
    n_dialogues = max(1, min(per_speaker, round((len(clips_a) + len(clips_b)) / config.turns_per_dialogue)))
    # Near-equal lengths; with equal counts both speakers have the same number of turns in every dialogue.
    pairs = _near_equal(per_speaker, n_dialogues)
    extras = _near_equal(surplus, n_dialogues)
    plans = []
    for k, (n_pairs, n_extra) in enumerate(zip(pairs, extras), start=1):
        first = a if rng.random() < 0.5 else b
        order = _turn_order(first, b if first == a else a, n_pairs, larger, n_extra, rng)
        current: dict[str, str | None] = {a: None, b: None}
        turns, cursor = [], 0
        for i, spk in enumerate(order):
            cat = _next_category(pools[spk], current[spk], current[b if spk == a else a], config, rng)
            current[spk] = cat
            clip = pools[spk][cat].pop()
            if i:
                cursor += int(round(rng.uniform(config.pause_min_s, config.pause_max_s) * SAMPLE_RATE))
            turns.append(PlannedTurn(clip=clip, start_sample=cursor))
            cursor += clip.samples
        plans.append(PlannedDialogue(dialogue_id=f"{session.name}_d{k:02d}", session=session.name,
                                     turns=tuple(turns)))
    return plans


def _near_equal(total: int, parts: int) -> list[int]:
    return [total // parts + (i < total % parts) for i in range(parts)]


def _turn_order(first: str, second: str, n_pairs: int, larger: str, n_extra: int,
                rng: np.random.Generator) -> list[str]:
    """Alternating turns; `n_extra` more turns of `larger`, each right after one of its own turns.

    No random number is drawn when `n_extra` is 0, so equal clip counts give strict alternation
    and the same random stream as before follow-up turns existed."""
    runs = np.ones(n_pairs, dtype=np.int64)
    if n_extra:
        np.add.at(runs, rng.integers(0, n_pairs, size=n_extra), 1)
    order: list[str] = []
    for j in range(n_pairs):
        for spk in (first, second):
            order.extend([spk] * (int(runs[j]) if spk == larger else 1))
    return order


def _shuffled_pools(clips: list, rng: np.random.Generator) -> dict[str, list]:
    pools: dict[str, list] = {}
    for c in sorted(clips, key=lambda c: c.stem):
        pools.setdefault(c.category, []).append(c)
    for cat in sorted(pools):
        rng.shuffle(pools[cat])
    return pools


def _next_category(pool: dict[str, list], own: str | None, other: str | None,
                   config: PseudoConversationConfig, rng: np.random.Generator) -> str:
    available = sorted(c for c, v in pool.items() if v)
    if own in available and rng.random() < config.p_stay:
        return own
    if other in available and rng.random() < config.p_contagion:
        return other
    weights = np.array([len(pool[c]) for c in available], dtype=np.float64)
    return available[int(rng.choice(len(available), p=weights / weights.sum()))]


def to_dialogues(plans: list[PlannedDialogue], audio_dir: Path, labels: str = "4") -> list[Dialogue]:
    """Manifest records for `plans`; dialogue audio is `audio_dir/<dialogue_id>.wav`."""
    allowed = LABEL_SETS[labels]
    out = []
    for p in plans:
        utts = [
            Utterance(
                id=t.clip.utterance_id,
                speaker=t.clip.speaker,
                start=t.start_sample / SAMPLE_RATE,
                end=(t.start_sample + t.clip.samples) / SAMPLE_RATE,
                emotion=t.clip.category if t.clip.category in allowed else None,
                text=t.clip.text,
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
                  progress: bool = True, desc: str = "dialogues") -> list[Dialogue]:
    """Write `folder/audio/<dialogue>.wav` and `folder/manifest.jsonl` for `plans`; returns the records."""
    from tqdm import tqdm

    from convmem.corpus.manifest import write_manifest

    folder = Path(folder)
    for p in tqdm(plans, desc=desc, unit="dlg", disable=not progress):
        render_dialogue(p, folder / "audio" / f"{p.dialogue_id}.wav")
    dialogues = to_dialogues(plans, folder / "audio", labels)
    write_manifest(folder / "manifest.jsonl", dialogues, labels=LABEL_SETS[labels])
    return dialogues


# what `convmem corpus` writes into OUT: all that --force may replace (convmem.staging)
OWNED_FILES = ("manifest.jsonl", "summary.json", "audio/*.wav")


def build_corpus(plans: list[PlannedDialogue], out: str | Path, labels: str = "4", force: bool = False,
                 progress: bool = True, desc: str = "dialogues") -> list[Dialogue]:
    """Render `plans` into `out` (manifest.jsonl + audio/) all or nothing; records point into `out`.
    An existing `out` is replaced only with `force`, and only if it holds nothing but OWNED_FILES."""
    out = Path(out)
    with staged_directory(out, force, OWNED_FILES) as stage:
        render_corpus(plans, stage, labels, progress, desc)
    return to_dialogues(plans, out / "audio", labels)
