"""TurEV-DB (Turkish acted emotional single words) → pseudo-conversations.

TurEV-DB (Canpolat, Ormanoğlu, Zeyrek, SLTU-CCURL 2020; CC BY-NC-ND 4.0, internal research use)
holds isolated acted words, not conversations: like RAVDESS, it is turned into
*pseudo*-conversations (`convmem.corpus.pseudo_conversations`), and every report that uses them
must say so. Turns are single words (0.35-2.5 s), much shorter than RAVDESS or nEMO sentences.

- Layout: `metadata.csv` (file, speaker, emotion, emotion_code, word, duration_s) beside
  `{Angry,Calm,Happy,Sad}/{speaker}_{code}_{word}.flac`; the code (kz angry, sk calm, mt happy,
  hl sad) must agree with the emotion.
- Emotions: Angry → ang, Happy → hap, Sad → sad, and **Calm → neu**. TurEV-DB has no neutral
  class; Calm is its low-arousal class, the nearest it has to neutral (its README). A "neu" score
  on TurEV-DB therefore measures calm speech; summary.json states this mapping. All four classes
  are scored: there are no context-only turns.
- Sessions: the metadata has no gender, so speakers are paired in id order (1157+1234,
  1358+1984, 6783+7895 in the shared copy), and summary.json says so; a speaker belongs to exactly
  one session. Speakers are `turev_1157`, utterances `turev_<file stem>`.
- Text: each utterance's `text` is the word as the metadata spells it (ASCII, no diacritics).
- The speakers' clip counts differ (one speaker has no calm or happy words, one few happy
  words): the surplus of a session's larger speaker becomes follow-up turns, so every clip is
  used once, and the emotion mix differs between sessions.
"""

from __future__ import annotations

from pathlib import Path

from convmem.corpus.clip_metadata import MetadataSpec, plan_metadata_corpus
from convmem.corpus.pseudo_conversations import Pairing, PlannedDialogue, PseudoConversationConfig, PseudoReport

TUREV = MetadataSpec(
    corpus="turev",
    title="TurEV-DB",
    categories={"angry": "ang", "happy": "hap", "sad": "sad", "calm": "neu"},
    text_column="word",
    code_column="emotion_code",
    codes={"kz": "angry", "sk": "calm", "mt": "happy", "hl": "sad"},
    clips_are="single words",
    note="calm -> neu: TurEV-DB has no neutral class; Calm, its low-arousal class, is the nearest to neutral",
)


def plan_turev(src: str | Path, config: PseudoConversationConfig = PseudoConversationConfig(),
               report: PseudoReport | None = None) -> tuple[list[PlannedDialogue], Pairing]:
    """Plan the dialogues of the TurEV-DB folder `src` (its metadata.csv and audio files)."""
    return plan_metadata_corpus(src, TUREV, config, report)
