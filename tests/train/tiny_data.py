"""Tiny coded dialogues the training tests learn from in seconds (no audio, no tokenizer)."""

from __future__ import annotations

import numpy as np

from convmem.slm.stream import CodedDialogue

LABELS = ("neu", "hap", "sad", "ang")


def dialogues(n_dialogues=3, n_utts=6, seed=0, codebook=16) -> list[CodedDialogue]:
    """Emotion k speaks codes from its own quarter of the codebook, so it can be learnt; about one
    turn in seven is unscored. Codes int64[3..11] per utterance."""
    rng = np.random.default_rng(seed)
    out = []
    for d in range(n_dialogues):
        utts = []
        for _ in range(n_utts):
            k = int(rng.integers(0, 4))
            lo = k * codebook // 4
            codes = rng.integers(lo, lo + codebook // 4, int(rng.integers(3, 12))).astype(np.int64)
            utts.append((codes, LABELS[k] if rng.random() < 0.85 else None))
        out.append(CodedDialogue(f"d{d}", utts))
    return out
