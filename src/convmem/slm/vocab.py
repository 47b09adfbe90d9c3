"""The emotion SLM's vocabulary: base tokens, audio codes, `<audio_end>`, emotion tokens (and marks).

Layout (eq. 1–2 of the DPM paper: |V_text| + |<audio_i>| + 1 + n_labels rows):

    [0, base_size)                         base tokens (a pretrained LM's text vocabulary, or the
                                           tiny model's own specials)
    [base_size, base_size + K)             <a_0> .. <a_{K-1}>   (K = codebook_size)
    base_size + K                          <audio_end>
    base_size + K + 1 + j                  <emo_{labels[j]}>
    base_size + K + 1 + E + m              speaker-relative prosody marks, only when
                                           `prosody_marks` (`convmem.audio.relative_prosody`;
                                           not in the paper): 4 features x 6 bins

An utterance's input is its audio ids, then (with marks) its 4 mark ids, then `<audio_end>`:
`utterance_ids` builds the part before `<audio_end>` for every caller.

The tiny model has no text, so its base vocabulary is just `TINY_SPECIALS = ("<pad>",)`
(base_size 1, pad id 0): a dedicated pad id keeps padded positions visibly inert in dumps and
gives HF configs a `pad_token_id`; no BOS is needed because windows start mid-stream anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from convmem.audio.relative_prosody import MARKS_PER_TURN, N_BINS, N_MARK_TOKENS, UNKNOWN, mark_token

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedTokenizerBase

TINY_SPECIALS: tuple[str, ...] = ("<pad>",)
AUDIO_END = "<audio_end>"


def audio_token(i: int) -> str:
    return f"<a_{i}>"


def emotion_token(label: str) -> str:
    return f"<emo_{label}>"


@dataclass(frozen=True)
class EmotionVocab:
    """Where the audio and emotion tokens live in the model's vocabulary (see module doc).

    Attributes:
        base_size:     number of ids before `<a_0>`.
        codebook_size: K, the speech tokenizer's codebook size.
        labels:        emotion labels in class-index order, e.g. ("neu", "hap", "sad", "ang").
        pad_id:        id used on padded positions (any base id; never a target).
        prosody_marks: each utterance ends with its speaker-relative prosody marks.
    """

    base_size: int
    codebook_size: int
    labels: tuple[str, ...]
    pad_id: int = 0
    prosody_marks: bool = False

    def __post_init__(self) -> None:
        if self.base_size < 0 or self.codebook_size < 1:
            raise ValueError(f"EmotionVocab: base_size must be >= 0 and codebook_size >= 1, got "
                             f"{self.base_size}, {self.codebook_size}")
        if not self.labels or len(set(self.labels)) != len(self.labels):
            raise ValueError(f"EmotionVocab: labels must be non-empty and distinct, got {self.labels}")
        object.__setattr__(self, "labels", tuple(self.labels))
        if not 0 <= self.pad_id < self.size:
            raise ValueError(f"EmotionVocab: pad_id {self.pad_id} outside [0, {self.size})")

    @classmethod
    def tiny(cls, codebook_size: int, labels: Sequence[str], prosody_marks: bool = False) -> "EmotionVocab":
        """Vocabulary of the tiny from-scratch model: `<pad>` (id 0), audio, end, emotions (, marks)."""
        return cls(base_size=len(TINY_SPECIALS), codebook_size=codebook_size, labels=tuple(labels), pad_id=0,
                   prosody_marks=prosody_marks)

    @property
    def audio_offset(self) -> int:
        """Id of `<a_0>`."""
        return self.base_size

    @property
    def audio_end_id(self) -> int:
        return self.base_size + self.codebook_size

    @property
    def emotion_ids(self) -> tuple[int, ...]:
        """Ids of the emotion tokens, in `labels` order."""
        first = self.audio_end_id + 1
        return tuple(range(first, first + len(self.labels)))

    @property
    def mark_offset(self) -> int:
        """Id of the first prosody mark token (== size when the vocabulary has none)."""
        return self.base_size + self.codebook_size + 1 + len(self.labels)

    @property
    def size(self) -> int:
        """Total number of ids (the model's vocabulary must have at least this many rows)."""
        return self.mark_offset + (N_MARK_TOKENS if self.prosody_marks else 0)

    @property
    def new_token_ids(self) -> tuple[int, ...]:
        """Ids added by the expansion (audio, end, emotions): the rows trained under LoRA."""
        return tuple(range(self.base_size, self.size))

    def audio_ids(self, codes) -> torch.Tensor:
        """Map speech-tokenizer codes int64[n] (numpy or torch) to vocabulary ids int64[n]."""
        arr = codes.detach().cpu().numpy() if isinstance(codes, torch.Tensor) else np.asarray(codes)
        if arr.ndim != 1:
            raise ValueError(f"audio codes must be 1-D, got shape {arr.shape}")
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"audio codes must be integers, got dtype {arr.dtype}")
        if arr.size and (arr.min() < 0 or arr.max() >= self.codebook_size):
            bad = int(np.flatnonzero((arr < 0) | (arr >= self.codebook_size))[0])
            raise ValueError(f"audio code {int(arr[bad])} at index {bad} outside "
                             f"[0, {self.codebook_size}) of this vocabulary")
        return torch.from_numpy(arr.astype(np.int64, copy=False)) + self.audio_offset

    def utterance_ids(self, codes, marks=None) -> torch.Tensor:
        """What comes before an utterance's `<audio_end>`: audio ids int64[n], then with
        `prosody_marks` its mark ids; `marks` int64[4] bins (`relative_prosody`), required exactly
        when this vocabulary has marks. Returns int64[n (+ 4)]."""
        ids = self.audio_ids(codes)
        if not self.prosody_marks:
            if marks is not None:
                raise ValueError("prosody marks given, but this vocabulary has no mark tokens")
            return ids
        if marks is None:
            raise ValueError("this model reads speaker-relative prosody marks after each utterance's "
                             "audio, and none were given")
        m = np.asarray(marks)
        if m.shape != (MARKS_PER_TURN,) or not np.issubdtype(m.dtype, np.integer) or m.min() < 0 or m.max() > UNKNOWN:
            raise ValueError(f"prosody marks must be {MARKS_PER_TURN} integer bins in [0, {UNKNOWN}], got {marks!r}")
        m = torch.from_numpy(m.astype(np.int64)) + torch.arange(MARKS_PER_TURN) * (N_BINS + 1) + self.mark_offset
        return torch.cat([ids, m])

    def utterance_input(self, codes, marks=None, frames=None):
        """`utterance_ids` with the utterance's code frames float32[n, D] (a frames model; None for a
        codes model) aligned to them: an `slm.audio_embedding.UtteranceInput`."""
        from convmem.slm.audio_embedding import UtteranceInput, aligned_frames

        ids = self.utterance_ids(codes, marks)
        if frames is None:
            return UtteranceInput(ids)
        if len(frames) != len(codes):
            raise ValueError(f"{len(frames)} frames for {len(codes)} audio codes")
        return UtteranceInput(ids, aligned_frames(frames, len(ids)))

    def emotion_id(self, label: str) -> int:
        return self.emotion_ids[self.label_index(label)]

    def label_index(self, label: str) -> int:
        """Class index of `label` (its position in `labels`)."""
        try:
            return self.labels.index(label)
        except ValueError:
            raise ValueError(f"emotion {label!r} is not one of this vocabulary's labels {self.labels}") from None

    def token_strings(self) -> list[str]:
        """Strings of the new tokens, in id order from `audio_offset`."""
        marks = ([mark_token(f, b) for f in range(MARKS_PER_TURN) for b in range(N_BINS + 1)]
                 if self.prosody_marks else [])
        return ([audio_token(i) for i in range(self.codebook_size)] + [AUDIO_END]
                + [emotion_token(lab) for lab in self.labels] + marks)

    def to_json(self) -> dict:
        return {"base_size": self.base_size, "codebook_size": self.codebook_size,
                "labels": list(self.labels), "pad_id": self.pad_id, "prosody_marks": self.prosody_marks}

    @classmethod
    def from_json(cls, d: dict) -> "EmotionVocab":
        missing = [k for k in ("base_size", "codebook_size", "labels") if k not in d]
        if missing:
            raise ValueError(f"vocab json lacks field(s) {missing}")
        return cls(base_size=int(d["base_size"]), codebook_size=int(d["codebook_size"]),
                   labels=tuple(d["labels"]), pad_id=int(d.get("pad_id", 0)),
                   prosody_marks=bool(d.get("prosody_marks", False)))


def expand_tokenizer(hf_tokenizer: "PreTrainedTokenizerBase", codebook_size: int,
                     labels: Sequence[str], prosody_marks: bool = False) -> EmotionVocab:
    """Add `<a_0>..<a_{K-1}>`, `<audio_end>`, `<emo_*>` (and marks) to a pretrained HF tokenizer (eq. 1–2).

    The tokens are added as special tokens (never split or normalised) and must receive the
    contiguous ids `len(tokenizer) ..`; the tokenizer is modified in place. The model's embeddings
    are resized separately (`slm.model.build_model`).
    """
    base = len(hf_tokenizer)
    existing = set(hf_tokenizer.get_vocab())
    vocab = EmotionVocab(base_size=base, codebook_size=codebook_size, labels=tuple(labels),
                         pad_id=_pad_id(hf_tokenizer), prosody_marks=prosody_marks)
    strings = vocab.token_strings()
    clash = [s for s in strings if s in existing]
    if clash:
        raise ValueError(f"tokenizer already contains {len(clash)} of the new tokens (e.g. {clash[0]!r}): "
                         f"was it expanded before? Load the saved model dir instead of expanding twice")
    hf_tokenizer.add_tokens(strings, special_tokens=True)
    got = hf_tokenizer.convert_tokens_to_ids([strings[0], strings[-1]])
    if got != [vocab.audio_offset, vocab.size - 1] or len(hf_tokenizer) != vocab.size:
        raise ValueError(f"tokenizer assigned ids {got} to {strings[0]}/{strings[-1]}, expected "
                         f"{[vocab.audio_offset, vocab.size - 1]}: the new tokens are not contiguous")
    return vocab


def _pad_id(tok: "PreTrainedTokenizerBase") -> int:
    for attr in ("pad_token_id", "eos_token_id", "unk_token_id"):
        v = getattr(tok, attr, None)
        if isinstance(v, int):
            return v
    return 0
