"""nEMO (Polish acted emotional speech) → pseudo-conversations.

nEMO (Christop, LREC-COLING 2024; CC BY-NC-SA 4.0) holds isolated acted sentences, not
conversations: like RAVDESS, it is turned into *pseudo*-conversations
(`convmem.corpus.pseudo_conversations`), and every report that uses them must say so.

- Layout: `metadata.csv` (file, speaker, gender, age, emotion, raw_text, duration_s) beside
  `samples/{speaker}_{emotion}_{n}.flac` (the 16 kHz copy) or the original wav files.
- Sessions: one female + one male speaker, paired in id order within each gender (the shared
  subset's EB0, IC0 female and KS0, SM0 male give `nemo_EB0-KS0` and `nemo_IC0-SM0`); a speaker
  belongs to exactly one session. Speakers are `nemo_EB0`, utterances `nemo_<file stem>`.
- Emotions (4-class use): neutral → neu, happiness → hap, sadness → sad, anger → ang; fear and
  surprised stay in the dialogue as unscored context turns (scored as fea/sur with `labels="7"`).
- Text: each utterance's `text` is the Polish sentence (`raw_text`). The same sentences recur
  across emotions and speakers, so a model can learn sentences as well as emotions: splits are by
  speaker (sessions), never inside a session.
"""

from __future__ import annotations

from pathlib import Path

from convmem.corpus.clip_metadata import MetadataSpec, plan_metadata_corpus
from convmem.corpus.pseudo_conversations import Pairing, PlannedDialogue, PseudoConversationConfig, PseudoReport

NEMO = MetadataSpec(
    corpus="nemo",
    title="nEMO",
    categories={"neutral": "neu", "happiness": "hap", "sadness": "sad", "anger": "ang",
                "fear": "fea", "surprised": "sur"},
    text_column="raw_text",
    gender_column="gender",
)


def plan_nemo(src: str | Path, config: PseudoConversationConfig = PseudoConversationConfig(),
              report: PseudoReport | None = None) -> tuple[list[PlannedDialogue], Pairing]:
    """Plan the dialogues of the nEMO folder `src` (its metadata.csv and audio files)."""
    return plan_metadata_corpus(src, NEMO, config, report)
