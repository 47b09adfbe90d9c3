"""The emotion SLM's training losses: L_a (eq. 3), L_e (eq. 5) and L = (L_a + L_e) / 2 (eq. 7).

Targets are prediction-aligned (see `slm.windows`): `targets[b, t]` is what the logits at [b, t]
must predict; IGNORE (-100) = none. Positions are selected *before* the softmax so padded or
untargeted positions never enter a loss or its gradient.

Share of a batch (multi-process training): with `norm` (`LossNorm` of the *whole* batch) a loss is
this share's sum divided by the whole batch's count, so the shares' losses add up to the whole
batch's loss (eq. 7 of the batch, however its rows are split among processes).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from convmem.slm.vocab import EmotionVocab

IGNORE = -100


@dataclass(frozen=True)
class LossNorm:
    """What the means of a whole batch divide by: `audio` = its L_a target tokens (dense) or its
    examples with any L_a target (per example); `emotion` = its L_e labels."""

    audio: int
    emotion: int


def loss_norm(la_targets: torch.Tensor, le_labels: torch.Tensor, per_example: bool) -> LossNorm:
    """The LossNorm of a batch from its targets int64[B, T] (IGNORE = none)."""
    sel = la_targets != IGNORE
    audio = int(sel.any(-1).sum()) if per_example else int(sel.sum())
    return LossNorm(audio=audio, emotion=int((le_labels != IGNORE).sum()))


def emotion_logits(logits: torch.Tensor, vocab: EmotionVocab) -> torch.Tensor:
    """Restrict logits[..., V] to the emotion ids → logits[..., n_labels] in `vocab.labels` order (eq. 5)."""
    idx = torch.tensor(vocab.emotion_ids, device=logits.device)
    return logits.index_select(-1, idx)


def emotion_loss(logits: torch.Tensor, labels: torch.Tensor, vocab: EmotionVocab,
                 norm: int | None = None) -> torch.Tensor:
    """L_e (eq. 5): cross-entropy of the restricted emotion logits.

    Args:
        logits: float[B, T, V] (or [N, V]).
        labels: int64[B, T] (or [N]) class index into `vocab.labels`, IGNORE where no emotion is read.
        norm: labelled positions of the whole batch this is a share of (`LossNorm.emotion`).
    Returns: scalar mean over labelled positions (0, still differentiable, when there are none);
        with `norm`, their sum / norm.
    """
    sel = labels != IGNORE
    if not bool(sel.any()):
        return logits.sum() * 0.0
    if norm is not None:
        return F.cross_entropy(emotion_logits(logits[sel], vocab).float(), labels[sel], reduction="sum") / norm
    return F.cross_entropy(emotion_logits(logits[sel], vocab).float(), labels[sel])


def audio_loss(logits: torch.Tensor, targets: torch.Tensor, per_example: bool = True,
               norm: int | None = None) -> torch.Tensor:
    """L_a (eq. 3): next-token cross-entropy over the full vocabulary.

    Args:
        logits:  float[B, T, V].
        targets: int64[B, T] id to predict from each position, IGNORE elsewhere.
        per_example: True = mean over each example's targets, then over examples that have any
            (eq. 3's 1/n_o per sentence); False = mean over all target tokens (dense chunks).
        norm: what the whole batch this is a share of divides by (`LossNorm.audio`).
    Returns: scalar (0, still differentiable, when there are no targets); with `norm`, the sum of
        what is averaged / norm.
    """
    sel = targets != IGNORE
    if not bool(sel.any()):
        return logits.sum() * 0.0
    nll = F.cross_entropy(logits[sel].float(), targets[sel], reduction="none")
    if not per_example:
        return nll.mean() if norm is None else nll.sum() / norm
    row = torch.nonzero(sel)[:, 0]
    counts = sel.sum(-1)
    per_row = torch.zeros(sel.shape[0], dtype=nll.dtype, device=nll.device).index_add_(0, row, nll)
    has = counts > 0
    mean_of_row = per_row[has] / counts[has]
    return mean_of_row.mean() if norm is None else mean_of_row.sum() / norm


@dataclass
class Losses:
    """total = (audio + emotion) / 2 (eq. 7); the parts are kept for logging."""

    total: torch.Tensor
    audio: torch.Tensor
    emotion: torch.Tensor


def slm_loss(logits: torch.Tensor, la_targets: torch.Tensor, le_labels: torch.Tensor,
             vocab: EmotionVocab, per_example: bool = True, norm: LossNorm | None = None) -> Losses:
    """Eq. 7 from logits[B, T, V] and prediction-aligned targets int64[B, T] (see module doc);
    with `norm`, this batch's share of the eq. 7 losses of the whole batch `norm` describes."""
    la = audio_loss(logits, la_targets, per_example=per_example, norm=None if norm is None else norm.audio)
    le = emotion_loss(logits, le_labels, vocab, norm=None if norm is None else norm.emotion)
    return Losses(total=(la + le) / 2, audio=la, emotion=le)
