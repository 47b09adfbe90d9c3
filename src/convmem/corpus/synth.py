"""Synthetic two-speaker conversations spoken by eSpeak NG, where context matters.

`synthesize_corpus(out, preset, seed)` writes, atomically (temp dir renamed at the end):
  OUT/manifest.jsonl          dialogues, gold emotions, exact turn times (DESIGN.md format)
  OUT/audio/<dialogue>.wav    16 kHz mono, the whole dialogue
  OUT/generator_truth.json    what only the generator knows (speaker habits, their rendered
                              neutral reference prosody, the emotion shifts). Inference must never
                              read it; it exists for the oracle (b) of `context_check`.
The generative model (habits, emotion shifts, inertia) is documented in `synth_presets`.

Everything random is drawn in the parent from `seed`; workers only render. libespeak-ng keeps
hidden global state between syntheses in a process (pitch-flutter phase, echo buffer, noise
generator), so each dialogue is rendered in a fresh process (maxtasksperchild=1) with eSpeak's noise
seeded per turn: the same seed gives byte-identical audio and manifest on any number of workers.
Workers fork from a forkserver that has imported our modules but never touched eSpeak, so a fresh
process costs milliseconds instead of a re-import.
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from convmem.corpus.espeak import PARAM_LIMITS, VoiceSettings
from convmem.corpus.sentences import REFERENCE_SENTENCES, backchannel, turn_text
from convmem.corpus.synth_presets import EMOTION_SHIFT, SynthPreset, get_preset
from convmem.corpus.types import EMOTIONS, Dialogue, Utterance
from convmem.errors import ConfigError, ManifestError
from convmem.staging import check_output_dir, staged_directory

SAMPLE_RATE = 16000
_WORKER_PRELOAD = ["convmem.corpus.synth", "convmem.audio.io", "convmem.audio.prosody", "scipy.signal",
                   "soundfile", "parselmouth"]
TRUTH_FILE = "generator_truth.json"
MANIFEST_FILE = "manifest.jsonl"
REPORT_FILE = "context_report.json"  # `convmem synth --report`
# everything `convmem synth` writes into OUT: what --force may replace (convmem.staging)
OWNED_FILES = (MANIFEST_FILE, TRUTH_FILE, REPORT_FILE, "audio/*.wav")
_NOISE_DBFS = -60.0  # faint room noise so pauses are not digital silence
# MELD labels -> ours; other labels stay as unscored context turns (emotion None).
MELD_TO_OURS = {"neutral": "neu", "joy": "hap", "sadness": "sad", "anger": "ang",
                "surprise": "sur", "fear": "fea", "disgust": "dis"}


@dataclass(frozen=True)
class Habit:
    """A speaker's habitual voice (eSpeak parameters)."""

    variant: str
    pitch: float
    range: float
    rate: float
    volume: float


@dataclass(frozen=True)
class PlannedTurn:
    speaker: str
    emotion: str  # rendered emotion (may be a MELD-only label, which is then unscored)
    text: str
    settings: VoiceSettings
    pause_s: float  # silence before the turn
    noise_seed: int  # eSpeak's breath-noise generator


@dataclass(frozen=True)
class PlannedDialogue:
    dialogue_id: str
    session: str
    turns: tuple[PlannedTurn, ...]
    noise_seed: int


# ---------------------------------------------------------------- planning (all randomness)

def draw_habit(rng: np.random.Generator, preset: SynthPreset) -> Habit:
    h = preset.habit
    variants = h.male_variants if rng.random() < 0.5 else h.female_variants
    return Habit(
        variant=f"{h.language}+{variants[rng.integers(len(variants))]}",
        pitch=float(np.clip(rng.normal(h.pitch_mean, h.pitch_sd), 15, 85)),
        range=float(np.clip(rng.normal(h.range_mean, h.range_sd), 15, 85)),
        rate=float(np.clip(h.rate_wpm_mean * math.exp(rng.normal(0, h.rate_log_sd)), 110, 260)),
        volume=float(np.clip(h.volume_mean * math.exp(rng.normal(0, h.volume_log_sd)), 35, 140)),
    )


def render_settings(habit: Habit, emotion: str, rng: np.random.Generator | None,
                    preset: SynthPreset) -> VoiceSettings:
    """The habit shifted by `emotion` (relative to the habit), plus turn jitter when rng is given."""
    s, j = EMOTION_SHIFT[emotion], preset.jitter
    noise = (lambda sd: rng.normal(0, sd)) if rng is not None else (lambda sd: 0.0)
    values = {
        "pitch": habit.pitch + s["pitch"] + noise(j.pitch_sd),
        "range": habit.range + s["range"] + noise(j.range_sd),
        "rate": habit.rate * s["rate"] * math.exp(noise(j.rate_log_sd)),
        "volume": habit.volume * s["volume"] * math.exp(noise(j.volume_log_sd)),
    }
    clipped = {k: int(round(np.clip(v, *PARAM_LIMITS[k]))) for k, v in values.items()}
    return VoiceSettings(voice=habit.variant, **clipped)


def markov_emotions(rng: np.random.Generator, speakers_seq: list[int], preset: SynthPreset) -> list[str]:
    """Per-speaker sticky emotion chains with contagion from the partner. Returns one label per turn."""
    prior = np.asarray(preset.emotion_prior, dtype=np.float64)
    stay = [rng.uniform(*preset.stay) for _ in range(2)]
    state: list[str | None] = [None, None]
    out = []
    for s in speakers_seq:
        cur, other = state[s], state[1 - s]
        if cur is None:
            # Conversations mostly open calmly (greetings, small talk) before feelings show.
            cur = "neu" if rng.random() < preset.open_neutral else EMOTIONS[rng.choice(4, p=prior)]
        elif rng.random() >= stay[s]:
            if other is not None and other != cur and rng.random() < preset.contagion:
                cur = other
            else:
                p = prior.copy()
                p[EMOTIONS.index(cur)] = 0.0
                cur = EMOTIONS[rng.choice(4, p=p / p.sum())]
        state[s] = cur
        out.append(cur)
    return out


def load_meld_sequences(meld_dir: str | Path) -> list[list[tuple[str, str]]]:
    """Real emotion sequences: per MELD dialogue, [(speaker name, our label)] in turn order."""
    meld_dir = Path(meld_dir)
    files = sorted(meld_dir.glob("*_sent_emo.csv"))
    if not files:
        raise ConfigError(f"{meld_dir}: no MELD *_sent_emo.csv files found")
    dialogues: list[list[tuple[str, str]]] = []
    for path in files:
        with open(path, encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            current: dict[str, list[tuple[int, str, str]]] = {}
            for lineno, row in enumerate(reader, start=2):
                try:
                    label = MELD_TO_OURS[row["Emotion"].strip().lower()]
                    key, idx = row["Dialogue_ID"], int(row["Utterance_ID"])
                except (KeyError, ValueError, AttributeError):
                    raise ManifestError(f"{path}:{lineno}: field Emotion/Dialogue_ID/Utterance_ID "
                                        f"missing or invalid") from None
                current.setdefault(key, []).append((idx, row["Speaker"], label))
            for key in current:
                dialogues.append([(spk, lab) for _, spk, lab in sorted(current[key])])
    return dialogues


def meld_turns(rng: np.random.Generator, meld: list[list[tuple[str, str]]], n: int) -> tuple[list[int], list[str]]:
    """`n` turns of real MELD emotion flow: consecutive MELD dialogues from a random start, their
    speakers folded onto two (1st, 3rd, ... speaker to appear -> A; 2nd, 4th, ... -> B)."""
    speakers, labels = [], []
    i = int(rng.integers(len(meld)))
    while len(labels) < n:
        order: dict[str, int] = {}
        for spk, lab in meld[i % len(meld)]:
            order.setdefault(spk, len(order))
            speakers.append(order[spk] % 2)
            labels.append(lab)
        i += 1
    return speakers[:n], labels[:n]


def plan_corpus(preset: SynthPreset, seed: int, meld_dir: str | Path | None = None
                ) -> tuple[dict[str, Habit], list[PlannedDialogue]]:
    """Draw every speaker, emotion, text and voice of the corpus from `seed` (no audio yet)."""
    root = np.random.SeedSequence(seed)
    meld = load_meld_sequences(meld_dir) if meld_dir is not None else None
    habits: dict[str, Habit] = {}
    plans: list[PlannedDialogue] = []
    session_seqs = root.spawn(preset.sessions)
    for si, sseq in enumerate(session_seqs, start=1):
        session = f"S{si:02d}"
        srng = np.random.default_rng(sseq)
        names = [f"{session}_A", f"{session}_B"]
        for name in names:
            habits[name] = draw_habit(srng, preset)
        for di, dseq in enumerate(sseq.spawn(preset.dialogues_per_session), start=1):
            rng = np.random.default_rng(dseq)
            n = int(rng.integers(preset.turns[0], preset.turns[1] + 1))
            if meld is None:
                seq = [int(rng.integers(2))]
                for _ in range(n - 1):
                    seq.append(seq[-1] if rng.random() < preset.same_speaker_rate else 1 - seq[-1])
                emotions = markov_emotions(rng, seq, preset)
            else:
                seq, emotions = meld_turns(rng, meld, n)
            turns = []
            for s, emo in zip(seq, emotions):
                habit = habits[names[s]]
                settings = render_settings(habit, emo, rng, preset)
                lo, hi = preset.turn_seconds
                if rng.random() < preset.backchannel_rate:
                    text = backchannel(rng)
                else:
                    seconds = rng.lognormal(math.log(preset.turn_seconds_median), 0.45)
                    seconds = float(np.clip(seconds, lo + 0.5, hi - 1.0))  # text length aims inside 1-8 s
                    words = max(4, int(seconds * settings.rate / 60.0))
                    text = turn_text(rng, emo, words)
                turns.append(PlannedTurn(
                    speaker=names[s], emotion=emo, text=text, settings=settings,
                    pause_s=float(rng.uniform(*preset.pause_seconds)),
                    noise_seed=int(rng.integers(1, 2**31 - 1)),
                ))
            plans.append(PlannedDialogue(f"{session}_D{di:02d}", session, tuple(turns),
                                         noise_seed=int(rng.integers(1, 2**31 - 1))))
    return habits, plans


# ---------------------------------------------------------------- rendering (worker processes)

def _speak(text: str, settings: VoiceSettings, noise_seed: int) -> np.ndarray:
    from convmem.audio.io import resample
    from convmem.corpus.espeak import native_sample_rate, synthesize

    wave = synthesize(text, settings, seed=noise_seed)
    return resample(wave, native_sample_rate(), SAMPLE_RATE)


def render_dialogue(plan: PlannedDialogue, wav_path: str) -> list[tuple[int, int]]:
    """Speak every turn, join them with pauses, write `wav_path`. Returns (start, end) samples per turn."""
    from convmem.audio.io import write_wav

    pieces, spans, pos = [], [], 0
    for t in plan.turns:
        gap = np.zeros(int(round(t.pause_s * SAMPLE_RATE)), dtype=np.float32)
        speech = _speak(t.text, t.settings, t.noise_seed)
        pieces += [gap, speech]
        pos += gap.size
        spans.append((pos, pos + speech.size))
        pos += speech.size
    tail = np.zeros(int(0.3 * SAMPLE_RATE), dtype=np.float32)
    wave = np.concatenate(pieces + [tail])
    rng = np.random.default_rng(plan.noise_seed)
    wave += rng.normal(0.0, 10 ** (_NOISE_DBFS / 20), wave.size).astype(np.float32)
    write_wav(wav_path, wave, SAMPLE_RATE)
    return spans


def reference_prosody(habit: Habit, preset: SynthPreset) -> dict[str, float]:
    """Mean prosody of fixed neutral sentences in the speaker's exact habitual voice (oracle (b))."""
    from convmem.audio.prosody import FEATURES, utterance_prosody

    settings = render_settings(habit, "neu", None, preset)
    stats = np.stack([utterance_prosody(_speak(s, settings, 1000 + i), SAMPLE_RATE).as_array()
                      for i, s in enumerate(REFERENCE_SENTENCES)])
    return {k: round(float(v), 6) for k, v in zip(FEATURES, np.nanmean(stats, axis=0))}


def _task(job: tuple) -> object:
    """Worker entry point (top level so spawn can pickle it)."""
    kind, *args = job
    if kind == "dialogue":
        return render_dialogue(*args)
    return reference_prosody(*args)


# ---------------------------------------------------------------- the corpus

def synthesize_corpus(
    out: str | Path,
    preset: str | SynthPreset = "default",
    seed: int = 0,
    force: bool = False,
    workers: int = 2,
    meld_dir: str | Path | None = None,
    progress: bool = True,
) -> list[Dialogue]:
    """Plan, render and write a corpus into `out` (see module doc). Returns the dialogues.

    Refuses a non-empty `out` unless `force`, and with `force` one holding files convmem did not
    write (OWNED_FILES); never leaves a half-written corpus (convmem.staging).
    """
    import multiprocessing as mp

    from tqdm import tqdm

    from convmem.corpus.manifest import write_manifest
    from convmem.fileio import atomic_write_json
    from convmem.fresh_processes import imap_fresh

    preset = get_preset(preset) if isinstance(preset, str) else preset
    out = Path(out)
    check_output_dir(out, force, OWNED_FILES)  # before minutes of rendering, not after
    habits, plans = plan_corpus(preset, seed, meld_dir)
    with staged_directory(out, force, OWNED_FILES) as tmp:
        (tmp / "audio").mkdir()
        jobs = [("dialogue", p, str(tmp / "audio" / f"{p.dialogue_id}.wav")) for p in plans]
        jobs += [("reference", h, preset) for h in habits.values()]
        names = [f"dialogue {p.dialogue_id}" for p in plans] + [f"reference voice of {s}" for s in habits]
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(_WORKER_PRELOAD)
        # One new process per job: eSpeak NG keeps hidden state between calls (fresh_processes).
        results = list(tqdm(imap_fresh(_task, jobs, workers=workers, context=ctx,
                                       describe=lambda i, _: f"synth: rendering {names[i]}"),
                            total=len(jobs), disable=not progress, desc=f"synth {preset.name}", unit="job"))
        spans, refs = results[: len(plans)], results[len(plans):]
        dialogues = [_to_dialogue(p, s, tmp / "audio" / f"{p.dialogue_id}.wav") for p, s in zip(plans, spans)]
        write_manifest(tmp / MANIFEST_FILE, dialogues)
        atomic_write_json(tmp / TRUTH_FILE, _truth(preset, seed, habits, refs, meld_dir))
    return [_rebase(d, tmp, out) for d in dialogues]


def _to_dialogue(plan: PlannedDialogue, spans: list[tuple[int, int]], wav: Path) -> Dialogue:
    utts = [
        Utterance(id=f"{plan.dialogue_id}_T{i:03d}", speaker=t.speaker,
                  start=a / SAMPLE_RATE, end=b / SAMPLE_RATE,
                  emotion=t.emotion if t.emotion in EMOTIONS else None, text=t.text)
        for i, (t, (a, b)) in enumerate(zip(plan.turns, spans))
    ]
    return Dialogue(plan.dialogue_id, plan.session, utts, audio=wav)


def _rebase(d: Dialogue, old: Path, new: Path) -> Dialogue:
    return replace(d, audio=new / Path(d.audio).relative_to(old)) if d.audio else d


def _truth(preset: SynthPreset, seed: int, habits: dict[str, Habit], refs: list, meld_dir) -> dict:
    return {
        "note": "generator truth: never an input to inference; used only by the oracle check (b)",
        "preset": preset.name,
        "seed": seed,
        "emotion_source": "meld" if meld_dir is not None else "markov",
        "emotion_shift": EMOTION_SHIFT,
        "speakers": {name: {"habit": asdict(h), "reference_prosody": ref}
                     for (name, h), ref in zip(habits.items(), refs)},
    }


def summarize(dialogues: list[Dialogue]) -> dict:
    """Corpus counts: sessions, speakers, dialogues, turns, minutes, emotions (null = unscored)."""
    emotions = Counter(u.emotion or "unscored" for d in dialogues for u in d.utterances)
    durations = [d.duration for d in dialogues]
    return {
        "sessions": len({d.session for d in dialogues}),
        "speakers": len({u.speaker for d in dialogues for u in d.utterances}),
        "dialogues": len(dialogues),
        "turns": sum(len(d.utterances) for d in dialogues),
        "minutes": round(sum(durations) / 60.0, 2),
        "dialogue_minutes": [round(min(durations, default=0) / 60, 2), round(max(durations, default=0) / 60, 2)],
        "emotions": {k: emotions[k] for k in (*EMOTIONS, "unscored") if emotions[k]},
    }


def format_summary(summary: dict) -> str:
    """One line for humans, e.g. for `make demo`."""
    emo = ", ".join(f"{k} {v}" for k, v in summary["emotions"].items())
    lo, hi = summary["dialogue_minutes"]
    return (f"{summary['sessions']} sessions, {summary['speakers']} speakers, {summary['dialogues']} dialogues "
            f"({lo}-{hi} min), {summary['turns']} turns, {summary['minutes']} min; emotions: {emo}")
