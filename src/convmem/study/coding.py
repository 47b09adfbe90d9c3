"""Audio of a study's dialogues -> what the model reads: per-utterance codes (cached by the
tokenizer's fingerprint and the audio), prosody marks and continuous frames when the model reads
them, as CodedDialogues (training) or per-utterance model inputs (evaluation).

All tables are keyed by utterance id, so folds and methods share one encoding.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from convmem.corpus.types import Dialogue

Table = dict[str, np.ndarray]  # utterance id -> its codes, marks or frames


def encode(tokenizer, dialogues: list[Dialogue], cache_root: Path) -> Table:
    """The codes of every utterance (cached under `cache_root`)."""
    from convmem.tokenizers.cache import CodeCache, encode_dialogues

    return encode_dialogues(tokenizer, dialogues, CodeCache(cache_root))


def marks(wanted: bool, dialogues: list[Dialogue], cache_root: Path) -> Table | None:
    """Prosody marks of every utterance when the model reads them, else None."""
    if not wanted:
        return None
    from convmem.tokenizers.cache import CodeCache, measure_marks

    return measure_marks(dialogues, cache=CodeCache(cache_root))


def frames(wanted: bool, tokenizer, dialogues: list[Dialogue]) -> Table | None:
    """Continuous frames of every utterance when the model reads them (slm.audio_input=frames), else
    None. The tokenizer caches them by audio content (whisper-kmeans), so folds share one encoding."""
    if not wanted:
        return None
    from convmem.tokenizers.cache import dialogue_frames

    return dialogue_frames(tokenizer, dialogues)


def coded(dialogue_id: str, source: Dialogue, codes: Table, marks: Table | None, frames: Table | None = None):
    """`source`'s utterances as a CodedDialogue called `dialogue_id`, from per-utterance-id codes (and
    marks, and frames)."""
    from convmem.slm.stream import CodedDialogue

    per_utt = lambda table: None if table is None else [table[u.id] for u in source.utterances]  # noqa: E731
    return CodedDialogue(dialogue_id, [(codes[u.id], u.emotion) for u in source.utterances],
                         per_utt(marks), per_utt(frames))


def coded_dialogues(dialogues: list[Dialogue], codes: Table, marks: Table | None = None,
                    frames: Table | None = None):
    """Every dialogue as a CodedDialogue (its own id)."""
    return [coded(d.dialogue_id, d, codes, marks, frames) for d in dialogues]


def utterance_inputs(vocab, dialogue: Dialogue, codes: Table, marks: Table | None, frames: Table | None) -> list:
    """The model input (`UtteranceInput`: ids + frames of a frames model) of each utterance of `dialogue`."""
    pick = lambda table, u: None if table is None else table[u.id]  # noqa: E731
    return [vocab.utterance_input(codes[u.id], pick(marks, u), pick(frames, u)) for u in dialogue.utterances]


def perturbed_coded_dialogues(cfg, tokenizer, train: list[Dialogue], cache_root: Path):
    """`cfg.augment.copies` speaker-perturbed copies of the training dialogues, coded (may be [])."""
    from convmem.tokenizers.cache import CodeCache, encode_perturbed_copies, perturbed_copy_frames

    copies = encode_perturbed_copies(tokenizer, train, cfg.augment, CodeCache(cache_root), marks=cfg.slm.prosody_marks)
    copy_frames = (perturbed_copy_frames(tokenizer, train, cfg.augment) if cfg.slm.reads_frames and copies
                   else [None] * len(copies))
    return [coded(*copy, f) for copy, f in zip(copies, copy_frames)]
