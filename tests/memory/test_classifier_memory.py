"""ClassifierMemory driven by the conversation engine. Own toy layout (not conftest's 64-id one):
tiny SLM embedding vocab 48, dim 32; audio ids 0..39, `<audio_end>` 40, emotion ids 41..44."""

import numpy as np
import pytest
import torch

from convmem.engine.conversation import ConversationEngine
from convmem.memory.base import Memory
from convmem.memory.classifier_memory import ClassifierMemory
from convmem.slm.classifier import ClassifierConfig, EmotionClassifier

AUDIO_END = 40
EMO = (41, 42, 43, 44)
N_LIMIT = 24


@pytest.fixture(scope="module")
def clf():
    torch.manual_seed(0)
    emb = torch.nn.Embedding(48, 32)
    model = EmotionClassifier.from_slm(emb, ClassifierConfig(n_labels=4))
    return model.train()  # ClassifierMemory must switch off dropout itself


def _dialogues():
    g = torch.Generator().manual_seed(7)
    return [[torch.randint(0, 40, (int(torch.randint(3, 12, (1,), generator=g)),), generator=g)
             for _ in range(n_utts)] for n_utts in (5, 2, 7, 3, 6)]


def _engine(clf, **kw):
    return ConversationEngine(ClassifierMemory(clf, EMO, N_LIMIT), AUDIO_END, EMO, N_LIMIT, **kw)


def test_implements_the_memory_protocol(clf):
    mem = ClassifierMemory(clf, EMO, N_LIMIT)
    assert isinstance(mem, Memory)
    assert mem.name == "classifier" and mem.history_tokens is None and mem.max_window == N_LIMIT
    assert not clf.training


def test_batched_equals_alone(clf):
    convs = _dialogues()
    engine = _engine(clf)
    batched = engine.run(convs, batch_size=3)
    alone = [engine.run([c], batch_size=1)[0] for c in convs]
    for b, a in zip(batched, alone):
        np.testing.assert_allclose(b.logits, a.logits, atol=1e-5, rtol=0)
        np.testing.assert_array_equal(b.window_tokens, a.window_tokens)
    assert max(r.window_tokens.max() for r in batched) == N_LIMIT  # truncation was exercised
    assert not np.allclose(batched[0].logits[0], batched[0].logits[1], atol=1e-4)


def test_reads_the_truncated_stream_with_its_own_predictions(clf):
    conv = _dialogues()[2]
    res = _engine(clf).run([conv])[0]
    stream: list[int] = []
    for k, utt in enumerate(conv):
        window = torch.tensor(stream + utt.tolist() + [AUDIO_END])[-N_LIMIT:]
        with torch.no_grad():
            logits = clf(window[None])[0]
        np.testing.assert_allclose(res.logits[k], logits.numpy(), atol=1e-5, rtol=0)
        stream += utt.tolist() + [AUDIO_END, EMO[int(logits.argmax())]]  # its own prediction, never gold
    # history changes the reading: the same last utterance alone gives other logits
    alone = _engine(clf).run([conv[-1:]])[0]
    assert not np.allclose(alone.logits[0], res.logits[-1], atol=1e-4)


def test_write_is_a_no_op_and_labels_must_match(clf):
    res = _engine(clf).run([_dialogues()[0]])[0]
    assert np.isnan(res.write_loss).all()
    with pytest.raises(ValueError, match="3 emotion ids but the classifier has 4 labels"):
        ClassifierMemory(clf, EMO[:3], N_LIMIT)
