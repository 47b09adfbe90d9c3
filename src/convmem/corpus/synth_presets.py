"""The synthetic corpus's generative model: presets, speaker habits and emotion shifts.

Design (why the numbers are what they are):
- Each speaker has a habitual voice whose spread across speakers (standard deviation) is at least
  the largest shift an emotion causes in the same parameter, and the voice variant (male/female
  eSpeak variants) adds a large F0 offset on top. So one utterance alone is ambiguous: a quiet
  speaker's anger is as loud as a loud speaker's neutral.
- Emotions shift the voice *relative to the habit* (additive on pitch/range, multiplicative on
  rate/volume), in the directions of the acoustic literature (Banse & Scherer, 1996; Juslin &
  Laukka, 2003): anger louder, faster, wider; sadness lower, slower, quieter, narrower; happiness
  higher and wider, a little faster.
- Emotional inertia with changes: a speaker keeps an emotion with probability 0.75-0.85 per turn,
  so an episode lasts ~4-7 of their turns, while a 30-80 turn dialogue gives each speaker 15-40
  turns and therefore several episodes. The speaker's earlier turns then span several emotions and
  their average approaches the habit, instead of only echoing the current emotion.
"""

from __future__ import annotations

from dataclasses import dataclass

from convmem.errors import ConfigError

# Additive (pitch, range: eSpeak 0..100 units) and multiplicative (rate, volume) shifts.
# sur/fea/dis are only rendered for MELD-driven sequences, where they are unscored context turns.
EMOTION_SHIFT: dict[str, dict[str, float]] = {
    "neu": {"pitch": 0.0, "range": 0.0, "rate": 1.00, "volume": 1.00},
    "hap": {"pitch": 9.0, "range": 12.0, "rate": 1.05, "volume": 1.12},
    "sad": {"pitch": -8.0, "range": -12.0, "rate": 0.86, "volume": 0.80},
    "ang": {"pitch": 4.0, "range": 10.0, "rate": 1.13, "volume": 1.40},
    "sur": {"pitch": 10.0, "range": 14.0, "rate": 1.00, "volume": 1.10},
    "fea": {"pitch": 6.0, "range": -4.0, "rate": 1.10, "volume": 0.90},
    "dis": {"pitch": -4.0, "range": 4.0, "rate": 0.92, "volume": 1.05},
}


@dataclass(frozen=True)
class HabitSpread:
    """Distribution of habitual voices across speakers (normal / log-normal, clipped)."""

    pitch_mean: float = 50.0
    pitch_sd: float = 11.0  # > largest |pitch shift| (9)
    range_mean: float = 50.0
    range_sd: float = 12.0  # >= largest |range shift| (12)
    rate_wpm_mean: float = 165.0
    rate_log_sd: float = 0.14  # > largest |log rate shift| (0.15 for sad ~ equal, 0.12 ang)
    volume_mean: float = 95.0
    volume_log_sd: float = 0.34  # = largest |log volume shift| (ang: log 1.4 = 0.34)
    male_variants: tuple[str, ...] = ("m1", "m2", "m3", "m4", "m5", "m6", "m7")
    female_variants: tuple[str, ...] = ("f1", "f2", "f3", "f4", "f5")
    language: str = "en-us"


@dataclass(frozen=True)
class UtteranceJitter:
    """Turn-to-turn variation that is neither habit nor emotion."""

    pitch_sd: float = 3.0
    range_sd: float = 4.0
    rate_log_sd: float = 0.04
    volume_log_sd: float = 0.06


@dataclass(frozen=True)
class SynthPreset:
    name: str
    sessions: int
    dialogues_per_session: int
    turns: tuple[int, int]  # inclusive range of turns per dialogue
    stay: tuple[float, float] = (0.75, 0.85)  # per-speaker probability of keeping the emotion
    contagion: float = 0.35  # when an emotion changes, chance it becomes the partner's emotion
    emotion_prior: tuple[float, float, float, float] = (0.4, 0.2, 0.2, 0.2)  # neu hap sad ang
    open_neutral: float = 0.8  # chance a speaker's first turn in a dialogue is neutral
    same_speaker_rate: float = 0.1  # chance a speaker takes two turns in a row
    backchannel_rate: float = 0.12  # short ~1 s turns
    turn_seconds: tuple[float, float] = (1.0, 8.0)
    turn_seconds_median: float = 4.0
    pause_seconds: tuple[float, float] = (0.15, 0.8)
    habit: HabitSpread = HabitSpread()
    jitter: UtteranceJitter = UtteranceJitter()


PRESETS: dict[str, SynthPreset] = {
    # For tests: a few short dialogues, seconds to make.
    "tiny": SynthPreset("tiny", sessions=3, dialogues_per_session=2, turns=(14, 18)),
    # The embedded default: 5 sessions (leave-one-session-out), 2-6 min dialogues.
    "default": SynthPreset("default", sessions=5, dialogues_per_session=4, turns=(30, 80)),
    # Many speakers: 15 sessions of 2 dialogues (30 speakers, ~1500 turns, ~1.5x default's audio).
    # A from-scratch SLM trained on default's 8 speakers per fold reads their habits as emotions;
    # with 28 it starts to generalise to new ones (docs/experiments/more-training-speakers.md).
    "wide": SynthPreset("wide", sessions=15, dialogues_per_session=2, turns=(30, 80)),
    # Scale tests: dialogues of 30-60 min (~450-900 turns).
    "long": SynthPreset("long", sessions=2, dialogues_per_session=1, turns=(450, 900)),
}


def get_preset(name: str) -> SynthPreset:
    """The preset called `name`; ConfigError listing the known ones otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown synth preset {name!r} (known: {', '.join(PRESETS)})") from None
