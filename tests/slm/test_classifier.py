import math

import numpy as np
import pytest
import torch

from convmem.errors import ConfigError
from convmem.slm.classifier import ClassifierConfig, EmotionClassifier, sinusoidal_positions


def _slm_embedding(seed: int = 0) -> torch.nn.Embedding:
    """Stands in for the emotion SLM's input embedding: vocab 48, dim 32."""
    torch.manual_seed(seed)
    return torch.nn.Embedding(48, 32)


def _classifier(seed: int = 0, **kw) -> EmotionClassifier:
    emb = _slm_embedding(seed)
    torch.manual_seed(seed + 1)
    return EmotionClassifier.from_slm(emb, ClassifierConfig(n_labels=4, **kw))


def _pad(windows: list[torch.Tensor], left: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    T = max(w.numel() for w in windows)
    ids = torch.full((len(windows), T), 7, dtype=torch.long)  # 7: a real id, so only the mask hides it
    mask = torch.zeros((len(windows), T), dtype=torch.long)
    for b, w in enumerate(windows):
        sl = slice(T - w.numel(), T) if left else slice(0, w.numel())
        ids[b, sl], mask[b, sl] = w, 1
    return ids, mask


def test_sinusoidal_positions_pinned_values():
    pe = sinusoidal_positions(torch.tensor([[0, 1, 5]]), 4)
    assert pe.shape == (1, 3, 4)
    np.testing.assert_allclose(pe[0, 0].numpy(), [0.0, 1.0, 0.0, 1.0], atol=1e-7)
    # dim 4: frequencies 1 and 10000^(-1/2) = 0.01
    np.testing.assert_allclose(pe[0, 2].numpy(), [math.sin(5), math.cos(5), math.sin(0.05), math.cos(0.05)], rtol=1e-6)


def test_embedding_rows_are_a_frozen_copy_of_the_slm():
    emb = _slm_embedding()
    clf = EmotionClassifier.from_slm(emb, ClassifierConfig(n_labels=4))
    before = {k: v.clone() for k, v in clf.state_dict().items()}
    assert torch.equal(clf.embedding.weight, emb.weight)
    assert clf.embedding.weight.data_ptr() != emb.weight.data_ptr()  # a copy, not the SLM's tensor
    assert all(p is not clf.embedding.weight for p in clf.trainable_parameters())

    opt = torch.optim.SGD(clf.trainable_parameters(), lr=0.1)  # the trainer tests cover AdamW
    clf.train()
    loss = torch.nn.functional.cross_entropy(clf(torch.randint(0, 48, (3, 9))), torch.tensor([0, 1, 2]))
    loss.backward()
    opt.step()
    assert clf.embedding.weight.grad is None
    assert torch.equal(clf.embedding.weight, emb.weight)
    assert not torch.equal(clf.head.weight, before["head.weight"])  # the step did train something


def test_from_slm_accepts_a_model_and_rejects_other_modules():
    class Slm(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = _slm_embedding(3)

        def get_input_embeddings(self):
            return self.emb

    slm = Slm()
    clf = EmotionClassifier.from_slm(slm, ClassifierConfig(n_labels=4))
    assert torch.equal(clf.embedding.weight, slm.emb.weight)
    with pytest.raises(TypeError, match="nn.Embedding"):
        EmotionClassifier.from_slm(torch.nn.Linear(4, 4), ClassifierConfig(n_labels=4))


@pytest.mark.parametrize("pooling", ["end", "mean"])
def test_padding_invariance(pooling):
    clf = _classifier(pooling=pooling).eval()
    g = torch.Generator().manual_seed(5)
    windows = [torch.randint(0, 48, (n,), generator=g) for n in (5, 13, 9)]
    alone = torch.cat([clf(w[None]) for w in windows]).detach()
    for left in (True, False):
        ids, mask = _pad(windows, left=left)
        np.testing.assert_allclose(clf(ids, mask).detach().numpy(), alone.numpy(), atol=1e-5, rtol=0)
    # the mask is what makes it hold: unmasked padding changes the short windows' logits
    ids, _ = _pad(windows)
    assert not torch.allclose(clf(ids).detach()[0], alone[0], atol=1e-3)
    assert not torch.allclose(alone[0], alone[1], atol=1e-3)


def test_history_reaches_the_end_position():
    clf = _classifier().eval()
    utt = torch.tensor([3, 4, 5, 40])
    hist_a, hist_b = torch.tensor([10, 11, 40, 41]), torch.tensor([30, 31, 40, 44])
    la = clf(torch.cat([hist_a, utt])[None])
    lb = clf(torch.cat([hist_b, utt])[None])
    assert not torch.allclose(la, lb, atol=1e-4)


def test_save_load_round_trip(tmp_path):
    clf = _classifier(d_model=16, n_heads=2, n_layers=1).eval()  # with the E -> d_model projection
    assert isinstance(clf.project, torch.nn.Linear)
    ids = torch.randint(0, 48, (2, 11), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[0, :4] = 0
    out = tmp_path / "clf"
    clf.save(out)
    clf.save(out)  # overwriting an existing dir works
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clf"]  # no temporaries left behind
    loaded = EmotionClassifier.load(out)
    assert loaded.config == clf.config and not loaded.training
    assert torch.equal(loaded(ids, mask), clf(ids, mask))
    assert not loaded.embedding.weight.requires_grad


def test_load_errors_name_the_problem(tmp_path):
    with pytest.raises(ConfigError, match="missing classifier_config.json"):
        EmotionClassifier.load(tmp_path)
    d = _classifier().save(tmp_path / "c")
    (d / "classifier_config.json").write_text('{"vocab_size": 48, "embed_dim": 32, "n_labels": 4, "colour": 1}')
    with pytest.raises(ConfigError, match="colour"):
        EmotionClassifier.load(d)
    (d / "classifier_config.json").write_text('{"vocab_size": 48, "embed_dim": 32, "n_labels": 5}')
    with pytest.raises(ConfigError, match="do not match"):
        EmotionClassifier.load(d)


@pytest.mark.parametrize("kw, msg", [
    (dict(d_model=30, n_heads=4), "divisible"),
    (dict(pooling="max"), "pooling"),
    (dict(n_labels=1), "n_labels"),
    (dict(dropout=1.0), "dropout"),
])
def test_bad_config_is_refused(kw, msg):
    cfg = dict(n_labels=4)
    cfg.update(kw)
    with pytest.raises(ConfigError, match=msg):
        EmotionClassifier(torch.zeros(48, 32), ClassifierConfig(**cfg))


def test_all_padding_row_is_refused():
    clf = _classifier().eval()
    with pytest.raises(ValueError, match="at least one real token"):
        clf(torch.zeros(2, 3, dtype=torch.long), torch.tensor([[1, 1, 1], [0, 0, 0]]))
