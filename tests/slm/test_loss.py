import math

import torch
import torch.nn.functional as F

from convmem.slm.loss import IGNORE, audio_loss, emotion_logits, emotion_loss, slm_loss
from convmem.slm.vocab import EmotionVocab

V = EmotionVocab.tiny(codebook_size=10, labels=("neu", "hap", "sad", "ang"))  # emotion ids 12..15
I = IGNORE


def _logits(seed=0, shape=(2, 5, 16)):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_emotion_logits_select_emotion_ids_in_label_order():
    x = _logits()
    assert torch.equal(emotion_logits(x, V), x[..., [12, 13, 14, 15]])


def test_changing_any_non_emotion_logit_leaves_le_unchanged():
    x = _logits(1)
    labels = torch.full((2, 5), I)
    labels[0, 2], labels[1, 4] = 3, 0
    ref = emotion_loss(x, labels, V)
    non_emotion = torch.ones(16, dtype=torch.bool)
    non_emotion[list(V.emotion_ids)] = False
    for seed in range(5):
        y = x.clone()
        y[..., non_emotion] += 100 * _logits(10 + seed)[..., non_emotion]
        assert torch.equal(emotion_loss(y, labels, V), ref)
    z = x.clone()
    z[0, 2, 12] += 1.0  # ...while an emotion logit at a labelled position does change it
    assert not torch.equal(emotion_loss(z, labels, V), ref)
    # and its gradient never reaches a non-emotion logit
    x.requires_grad_(True)
    emotion_loss(x, labels, V).backward()
    assert (x.grad[..., non_emotion] == 0).all() and (x.grad[0, 2, 12:] != 0).all()


def test_emotion_loss_is_restricted_cross_entropy():
    x = _logits(2)
    labels = torch.full((2, 5), I)
    labels[1, 1] = 2
    want = -torch.log_softmax(x[1, 1, 12:16], -1)[2]
    assert torch.allclose(emotion_loss(x, labels, V), want)


def test_audio_loss_per_example_mean_vs_token_mean():
    x = _logits(3)
    t = torch.full((2, 5), I)
    t[0, 0], t[1, 1], t[1, 2], t[1, 3] = 4, 5, 6, 11
    nll = F.cross_entropy(x[t != I], t[t != I], reduction="none")  # [nll0, nll1a, nll1b, nll1c]
    per_ex = (nll[0] + nll[1:].mean()) / 2  # eq. 3: 1/n_o per sentence, then over sentences
    assert torch.allclose(audio_loss(x, t, per_example=True), per_ex)
    assert torch.allclose(audio_loss(x, t, per_example=False), nll.mean())


def test_total_is_mean_of_parts_and_empty_targets_give_differentiable_zero():
    x = _logits(4).requires_grad_(True)
    t = torch.full((2, 5), I)
    t[0, 1] = 3
    le = torch.full((2, 5), I)
    le[1, 0] = 1
    losses = slm_loss(x, t, le, V)
    assert torch.allclose(losses.total, (losses.audio + losses.emotion) / 2)
    assert math.isclose(losses.audio.item(), F.cross_entropy(x[0, 1:2], t[0, 1:2]).item(), rel_tol=1e-6)
    none = torch.full((2, 5), I)
    zero = emotion_loss(x, none, V) + audio_loss(x, none)
    assert zero.item() == 0.0
    zero.backward()
    assert (x.grad == 0).all()


def test_padding_nan_never_reaches_loss():
    x = _logits(5)
    x[0, 0] = float("nan")  # e.g. a fully masked padded position
    t = torch.full((2, 5), I)
    t[0, 3] = 2
    assert torch.isfinite(audio_loss(x, t)) and torch.isfinite(emotion_loss(x, t, V))
