"""A dialogue as one token stream: `<a_..>…<audio_end>[<emo_x>]` per utterance, in order.

Layout, for each utterance in order: its audio ids (then its speaker-relative prosody marks when the
vocabulary has them), then `<audio_end>`, then its emotion token if one is given. Who gives it:

- training, "gold" (the paper): the gold label; an unscored context turn (emotion None) gets NO
  emotion token — there is nothing honest to put there, and the paper's stream only carries labels
  it has. "predicted": a prediction in place of the one inference will write there: an inner
  backbone's reading of the turn alone, out of fold (study/crossfit.py), given on *every* turn, as
  inference does; the gold label stays the L_e target. Training on gold tokens teaches a model to copy the previous token, which
  at inference is its own, possibly wrong, prediction (exposure bias); out-of-fold tokens are as
  wrong as its predictions on unseen speakers, so it learns how far to trust them.
- inference: the caller passes the model's own earlier predictions (or None): gold labels never
  enter an inference stream (DESIGN.md).

The position right after `<audio_end>` is where the emotion is predicted (eq. 5), so a stream
with or without emotion tokens serves both training and reading.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from convmem.slm.vocab import EmotionVocab

# One utterance of a coded dialogue: its speech-tokenizer codes int64[n] and gold emotion or None.
CodedUtterance = tuple[np.ndarray, "str | None"]


@dataclass
class CodedDialogue:
    """A dialogue after speech tokenization: what the SLM trains on.

    Attributes:
        dialogue_id: the manifest's dialogue id (used in error messages).
        utterances:  list of (codes int64[n_i], emotion str | None), in time order.
        marks:       per utterance, its prosody marks int64[4] (`convmem.audio.relative_prosody`),
                     or None when the model reads none.
        frames:      per utterance, the continuous frames float32[n_i, D] its codes were assigned
                     from, or None when the model reads codes (slm/audio_embedding.py).
        tokens:      per utterance, the emotion token a "predicted" training stream writes back
                     after it (an out-of-fold prediction; None: no token), or None when not set.
    """

    dialogue_id: str
    utterances: list[CodedUtterance] = field(default_factory=list)
    marks: list[np.ndarray] | None = None
    frames: list[np.ndarray] | None = None
    tokens: list[str | None] | None = None

    @property
    def codes(self) -> list[np.ndarray]:
        return [c for c, _ in self.utterances]

    @property
    def emotions(self) -> list[str | None]:
        return [e for _, e in self.utterances]

    def inputs(self, vocab: EmotionVocab) -> list:
        """Each utterance's model input (`slm.audio_embedding.UtteranceInput`: ids, frames)."""
        pick = lambda table, i: None if table is None else table[i]  # noqa: E731
        return [vocab.utterance_input(c, pick(self.marks, i), pick(self.frames, i)) for i, c in enumerate(self.codes)]

    @property
    def n_tokens(self) -> int:
        """Stream length with gold emotion tokens."""
        marks = 0 if self.marks is None else sum(len(m) for m in self.marks)
        return marks + sum(len(c) + 1 + (e is not None) for c, e in self.utterances)


@dataclass
class Stream:
    """The token stream of one dialogue.

    Attributes:
        ids:           int64[N]  vocabulary ids.
        utt_start:     int64[U]  index of each utterance's first audio id (== its `<audio_end>`
                                 index when the utterance has no codes).
        audio_end_pos: int64[U]  index of each utterance's `<audio_end>`.
        emotion_pos:   int64[U]  index of each utterance's emotion token, -1 where absent.
        labels:        int64[U]  class index (into `vocab.labels`) of the utterance's label (the L_e
                                 target), -1 where absent; the emotion token, when present, is the
                                 label's own, or an out-of-fold prediction in a "predicted" stream.
        frames:        float32[N, D] continuous frames aligned with `ids` (zeros where the id is not
                                 audio), or None (a codes model).
    """

    ids: torch.Tensor
    utt_start: torch.Tensor
    audio_end_pos: torch.Tensor
    emotion_pos: torch.Tensor
    labels: torch.Tensor
    frames: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @property
    def n_utterances(self) -> int:
        return int(self.utt_start.shape[0])

    def utterance_end(self, i: int) -> int:
        """Exclusive end of utterance i's tokens (after its emotion token when present)."""
        return int(self.emotion_pos[i] if self.emotion_pos[i] >= 0 else self.audio_end_pos[i]) + 1


def build_stream(codes: Sequence[np.ndarray], vocab: EmotionVocab,
                 emotions: Sequence[str | None], where: str = "dialogue",
                 insert_emotion_tokens: bool = True, marks: Sequence[np.ndarray] | None = None,
                 frames: Sequence[np.ndarray] | None = None,
                 tokens: Sequence[str | None] | None = None) -> Stream:
    """Concatenate utterances into one stream (see module doc for the layout).

    Args:
        codes:    per utterance, speech codes int64[n_i] in [0, vocab.codebook_size).
        emotions: per utterance, the emotion token to insert after `<audio_end>`, or None.
        where:    names the dialogue in error messages.
        insert_emotion_tokens: False keeps the labels (L_e targets) but puts no emotion token in
            the stream, so the model never sees an earlier utterance's emotion token — the
            training counterpart of inference with `emotion_tokens="none"`.
        marks:    per utterance, prosody marks int64[4]; required exactly when `vocab.prosody_marks`.
        frames:   per utterance, its codes' frames float32[n_i, D] (a frames model), or None.
        tokens:   per utterance, the emotion token to insert after `<audio_end>` instead of the
            label's (None: no token there), with `emotions` kept as the L_e labels; None = the
            labels' own tokens (as `insert_emotion_tokens` says).
    """
    if len(codes) != len(emotions):
        raise ValueError(f"{where}: {len(codes)} utterances of codes but {len(emotions)} emotions")
    for name, extra in (("prosody marks", marks), ("frames", frames), ("emotion tokens", tokens)):
        if extra is not None and len(extra) != len(codes):
            raise ValueError(f"{where}: {len(codes)} utterances of codes but {len(extra)} of {name}")
    pieces: list[torch.Tensor] = []
    frame_pieces: list[torch.Tensor] = []
    utt_start, end_pos, emo_pos, labels = [], [], [], []
    n = 0
    for i, (c, emo) in enumerate(zip(codes, emotions)):
        try:
            a = vocab.utterance_input(c, None if marks is None else marks[i], None if frames is None else frames[i])
            lab = vocab.label_index(emo) if emo is not None else -1
            if tokens is None:
                token = lab if insert_emotion_tokens else -1
            else:
                token = vocab.label_index(tokens[i]) if tokens[i] is not None else -1
        except ValueError as exc:
            raise ValueError(f"{where}, utterance {i}: {exc}") from None
        utt_start.append(n)
        if a.frames is not None:
            frame_pieces += [a.frames, a.frames.new_zeros(1 + (token >= 0), a.frames.shape[1])]
        a = a.ids
        pieces.append(a)
        n += len(a)
        end_pos.append(n)
        tail = [vocab.audio_end_id]
        n += 1
        if token >= 0:
            tail.append(vocab.emotion_ids[token])
            emo_pos.append(n)
            n += 1
        else:
            emo_pos.append(-1)
        labels.append(lab)
        pieces.append(torch.tensor(tail, dtype=torch.long))
    ids = torch.cat(pieces) if pieces else torch.zeros(0, dtype=torch.long)
    as_t = lambda xs: torch.tensor(xs, dtype=torch.long)  # noqa: E731
    return Stream(ids=ids, utt_start=as_t(utt_start), audio_end_pos=as_t(end_pos),
                  emotion_pos=as_t(emo_pos), labels=as_t(labels),
                  frames=torch.cat(frame_pieces) if frame_pieces else None)


# What a training stream holds after each utterance: its gold emotion token (labelled ones), the
# model's out-of-fold prediction (every one; `CodedDialogue.tokens`), or nothing.
TRAIN_EMOTION_TOKENS = ("gold", "none", "predicted")


def dialogue_stream(d: CodedDialogue, vocab: EmotionVocab, emotion_tokens: str = "gold") -> Stream:
    """Training stream of a coded dialogue: gold emotion tokens where labelled ("gold"), its
    `tokens` ("predicted"), or none in the stream but labels kept for L_e ("none")."""
    if emotion_tokens not in TRAIN_EMOTION_TOKENS:
        raise ValueError(f"emotion_tokens must be one of {TRAIN_EMOTION_TOKENS}, got {emotion_tokens!r}")
    if emotion_tokens == "predicted" and d.tokens is None:
        raise ValueError(f"dialogue {d.dialogue_id!r}: emotion_tokens 'predicted' needs its out-of-fold "
                         "predicted tokens (study/crossfit.py), and it has none")
    return build_stream(d.codes, vocab, d.emotions, where=f"dialogue {d.dialogue_id!r}",
                        insert_emotion_tokens=emotion_tokens == "gold", marks=d.marks, frames=d.frames,
                        tokens=d.tokens if emotion_tokens == "predicted" else None)
