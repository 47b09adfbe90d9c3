"""The one utterance encoder: audio -> what a model reads before each utterance's `<audio_end>`.

An utterance becomes its speech-tokenizer codes plus the per-utterance features its model reads:
speaker-relative prosody marks (they need the conversation: the same speaker's earlier turns) and
continuous encoder frames (a frames model, slm/audio_embedding.py). Training, evaluation (`run`,
`eval-model`, VAD runs), `predict` and `serve` all encode here, so a new per-utterance feature is
added once, in this file:

    encoder = UtteranceEncoder(tokenizer, prosody_marks=True, frames=False, cache=CodeCache(root))
    table = encoder.dialogues(dialogues)          # offline: {utterance id: EncodedUtterance}, cached
    live = encoder.conversation()                 # live: one conversation, one utterance at a time
    x = live.encode(wave16k, speaker="A").model_input(vocab)

Offline and live encodings of the same conversation are identical (tested): the offline pass only
adds the cache (codes and turn prosody keyed by audio content) and batches the frame encoder.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass

import numpy as np

from convmem.corpus.types import Dialogue
from convmem.tokenizers.base import SAMPLE_RATE, SpeechTokenizer
from convmem.tokenizers.cache import CodeCache
from convmem.tokenizers.dialogue_audio import (
    dialogue_frames,
    encode_dialogues,
    encode_perturbed_copies,
    measure_marks,
    perturbed_copy_frames,
)


@dataclass(frozen=True)
class EncodedUtterance:
    """One utterance as its model reads it, before the vocabulary's ids.

    codes:   int64[n] speech-tokenizer codes (25 Hz).
    marks:   int64[4] speaker-relative prosody bins (audio/relative_prosody.py), or None when the
             model reads no marks.
    frames:  float32[n, D] the continuous frames the codes were assigned from, or None when the
             model reads codes.
    speaker: who spoke, when a live conversation assigned it (online diarisation), else as given.
    """

    codes: np.ndarray
    marks: np.ndarray | None = None
    frames: np.ndarray | None = None
    speaker: Hashable | None = None

    @property
    def n_ids(self) -> int:
        """Ids the model reads for it before `<audio_end>`: its codes, then its marks (as
        `model_input`'s ids, without building them)."""
        return int(self.codes.size) + (0 if self.marks is None else int(self.marks.size))

    def model_input(self, vocab):
        """The `slm.audio_embedding.UtteranceInput` of this utterance under `vocab` (EmotionVocab):
        ids int64[n (+ 4 marks)], frames float32[n (+ 4), D] aligned to them for a frames model,
        and its speaker."""
        import dataclasses

        x = vocab.utterance_input(self.codes, self.marks, self.frames)
        return x if self.speaker is None else dataclasses.replace(x, speaker=self.speaker)


Encoded = dict[str, EncodedUtterance]  # utterance id -> its encoding


class UtteranceEncoder:
    """Audio -> EncodedUtterance for one model: its tokenizer, and whether it reads prosody marks
    and continuous frames.

    cache: a CodeCache for the offline passes (codes and turn prosody by audio content; a
        pretrained encoder's features beside it). Live encoding never writes: predict and serve
        leave nothing on disk.
    """

    def __init__(self, tokenizer: SpeechTokenizer, *, prosody_marks: bool = False, frames: bool = False,
                 cache: CodeCache | None = None):
        self.tokenizer = tokenizer
        self.prosody_marks = bool(prosody_marks)
        self.frames = bool(frames)
        self.cache = cache

    @classmethod
    def of(cls, bundle, cache: CodeCache | None = None) -> "UtteranceEncoder":
        """The encoder a loaded model (convmem.bundle.Bundle) reads with."""
        return cls(bundle.tokenizer, prosody_marks=bundle.vocab.prosody_marks,
                   frames=bundle.slm_config.reads_frames, cache=cache)

    def dialogues(self, dialogues: Iterable[Dialogue], progress: bool = True) -> Encoded:
        """Every utterance of `dialogues`, each dialogue one conversation: {utterance id: EncodedUtterance}.

        Raises ManifestError when an utterance id occurs twice (ids key the result)."""
        dialogues = list(dialogues)
        codes = encode_dialogues(self.tokenizer, dialogues, self.cache, progress)
        marks = measure_marks(dialogues, progress, self.cache) if self.prosody_marks else None
        frames = dialogue_frames(self.tokenizer, dialogues, progress) if self.frames else None
        return _joined(codes, marks, frames)

    def perturbed_copies(self, dialogues: Iterable[Dialogue], augment, progress: bool = True
                         ) -> list[tuple[str, Dialogue, Encoded]]:
        """`augment.copies` speaker-perturbed copies of every dialogue (training data only, see
        audio/augment.py), each encoded as a conversation of its own: [(copy id "<dialogue>#aug<k>",
        source dialogue, {utterance id: EncodedUtterance})]."""
        dialogues = list(dialogues)
        copies = encode_perturbed_copies(self.tokenizer, dialogues, augment, self.cache, progress,
                                         marks=self.prosody_marks)
        frames = (perturbed_copy_frames(self.tokenizer, dialogues, augment) if self.frames and copies
                  else [None] * len(copies))
        return [(copy_id, source, _joined(codes, marks, f)) for (copy_id, source, codes, marks), f in zip(copies, frames)]

    def conversation(self, speakers=None) -> "ConversationEncoder":
        """A live encoder for one new conversation (its own speaker references).

        speakers: an online speaker assigner (speakers/online.py `OnlineSpeakers`) that names the
            speaker of an utterance given without one, or None (such an utterance is one shared
            speaker)."""
        return ConversationEncoder(self, speakers)


class ConversationEncoder:
    """One live conversation's encoder: each `encode` is the next utterance, in time order."""

    def __init__(self, encoder: UtteranceEncoder, speakers=None):
        from convmem.audio.relative_prosody import SpeakerProsodyReference

        self.encoder = encoder
        self._reference = SpeakerProsodyReference()
        self._speakers = speakers

    def encode(self, wave16k: np.ndarray, speaker: Hashable | None = None) -> EncodedUtterance:
        """float32[samples] at 16 kHz of the conversation's next utterance -> its EncodedUtterance;
        marks compare it with `speaker`'s earlier utterances here. Without `speaker`, the online
        assigner names it when there is one, else it is one shared speaker (None)."""
        if speaker is None and self._speakers is not None:
            from convmem.speakers.encoder import embed_utterance

            speaker = self._speakers.assign(embed_utterance(wave16k), wave16k.size / SAMPLE_RATE)
        tok = self.encoder.tokenizer
        codes = np.asarray(tok.encode(wave16k, SAMPLE_RATE), dtype=np.int64)
        frames = np.asarray(tok.frames(wave16k, SAMPLE_RATE), dtype=np.float32) if self.encoder.frames else None
        marks = None
        if self.encoder.prosody_marks:
            from convmem.audio.relative_prosody import turn_prosody

            marks = self._reference.mark(speaker, turn_prosody(wave16k))
        return EncodedUtterance(codes, marks, frames, speaker)


def _joined(codes: dict[str, np.ndarray], marks: dict[str, np.ndarray] | None,
            frames: dict[str, np.ndarray] | None) -> Encoded:
    pick = lambda table, uid: None if table is None else table[uid]  # noqa: E731
    return {uid: EncodedUtterance(c, pick(marks, uid), pick(frames, uid)) for uid, c in codes.items()}
