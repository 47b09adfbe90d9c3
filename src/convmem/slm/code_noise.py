"""Code noise: replace a random fraction of a training batch's input audio codes with random codes.

Why. A from-scratch emotion SLM trained for the epochs it needs to read emotion words from the
codes also memorises every training utterance: L_e falls to ~0.005, including on the turns whose
label nothing in the audio generalises to (most turns: the synthetic corpus makes one utterance's
prosody ambiguous on purpose). On an unseen speaker those memorised habits become confident wrong
guesses instead of the class prior. Corrupting inputs afresh each step (the input-noise regulariser
of denoising autoencoders, and the masking of BERT / HuBERT) makes an utterance's exact code string
useless to memorise, while a sentence's words survive a few corrupted frames.

Only the inputs change: the L_a targets stay the clean next codes and `<audio_end>` / emotion / pad
tokens are never touched, so the loss is still eq. 7 on the clean stream.

A frames model (`slm.audio_input=frames`) does not read code ids at audio positions, so replacing
ids alone would change nothing it sees: its corrupted positions get, besides the random code, the
frame of an audio position drawn uniformly from the batch — the continuous counterpart of a code
drawn from the codebook. The draw is a pure
function of the seed ints (the loop passes train seed, step, process rank), so a resumed run
corrupts exactly as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses

import torch

from convmem.slm.vocab import EmotionVocab
from convmem.slm.windows import Batch


def corrupt_codes(batch: Batch, vocab: EmotionVocab, rate: float, seed: tuple[int, ...] | list[int]) -> Batch:
    """A copy of `batch` whose input audio codes are each replaced, with probability `rate`, by a
    code drawn uniformly from the codebook (which may be the same code).

    batch.input_ids: int64[B, T]; every other field is shared, not copied (but `frames`, when the
    batch has them: corrupted positions take the frame of a random audio position of the batch).
    `seed` (ints, e.g. (train seed, step, rank)) fixes the draw. rate 0 returns `batch` itself.
    """
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"code noise rate must be in [0, 1), got {rate}")
    if rate == 0.0:
        return batch
    gen = torch.Generator().manual_seed(_mix(seed))
    ids = batch.input_ids
    lo, k = vocab.audio_offset, vocab.codebook_size
    is_code = (ids >= lo) & (ids < lo + k)
    hit = is_code & (torch.rand(ids.shape, generator=gen) < rate)
    noisy = ids.clone()
    n_hit = int(hit.sum())
    noisy[hit] = lo + torch.randint(0, k, (n_hit,), generator=gen)
    if batch.frames is None or n_hit == 0:
        return dataclasses.replace(batch, input_ids=noisy)
    rows, cols = is_code.nonzero(as_tuple=True)
    pick = torch.randint(0, rows.numel(), (n_hit,), generator=gen)
    frames = batch.frames.clone()
    frames[hit] = batch.frames[rows[pick], cols[pick]]
    return dataclasses.replace(batch, input_ids=noisy, frames=frames)


def _mix(seed) -> int:
    """One 63-bit generator seed from a few ints (numpy's SeedSequence mixing)."""
    import numpy as np

    return int(np.random.SeedSequence([int(s) for s in seed]).generate_state(1, dtype=np.uint64)[0] >> 1)
