"""Trainer of the classifier baseline on a toy task: tiny SLM embedding (vocab 48, dim 32), audio ids
0..39, `<audio_end>` 40, emotion ids 41..44."""

import pytest
import torch

from convmem.engine.conversation import ConversationEngine
from convmem.errors import ConfigError
from convmem.memory.base import WindowBatch
from convmem.slm.classifier import ClassifierConfig, EmotionClassifier
from convmem.train.classifier_trainer import (ClassifierTrainConfig, ClassifierWindow, collate_windows,
                                              train_classifier, windows_from_dialogue)

AUDIO_END = 40
EMO = (41, 42, 43, 44)


def _toy_dialogues(seed: int, n_dialogues: int, n_utts: int = 6, dominance: float = 0.7):
    """Label k = the utterance's audio ids are mostly drawn from [10k, 10k+10); the rest are uniform
    over 0..39. Labels are independent across utterances, so only the current utterance's content
    (inside a window full of history) tells the label."""
    g = torch.Generator().manual_seed(seed)
    convs, labels = [], []
    for _ in range(n_dialogues):
        utts, labs = [], []
        for _ in range(n_utts):
            k = int(torch.randint(0, 4, (1,), generator=g))
            n = int(torch.randint(4, 11, (1,), generator=g))
            own = torch.randint(10 * k, 10 * k + 10, (n,), generator=g)
            noise = torch.randint(0, 40, (n,), generator=g)
            utts.append(torch.where(torch.rand(n, generator=g) < dominance, own, noise))
            labs.append(k)
        convs.append(utts)
        labels.append(labs)
    return convs, labels


def _windows(convs, labels, n_limit=32):
    return [w for c, l in zip(convs, labels) for w in windows_from_dialogue(c, l, AUDIO_END, EMO, n_limit)]


def _classifier(seed=0):
    torch.manual_seed(seed)
    emb = torch.nn.Embedding(48, 32)
    torch.manual_seed(seed + 1)
    return EmotionClassifier.from_slm(emb, ClassifierConfig(n_labels=4)), emb


class _Recorder:
    """A stateless memory that records the windows the engine builds for `window`."""

    name, history_tokens = "recorder", None

    def __init__(self, n_limit):
        self.max_window, self.windows = n_limit, []

    def init(self, batch_size):
        return None

    def reset(self, state, rows, keys=None):
        return state

    def write(self, state, batch: WindowBatch):
        return state, torch.full((batch.batch_size,), float("nan"))

    def read(self, state, batch: WindowBatch):
        self.windows.append(batch.input_ids[0][batch.attention_mask[0].bool()].clone())
        return torch.zeros(batch.batch_size, len(EMO))


def test_windows_are_the_window_memorys_windows():
    """With gold labels fed back (the engine's oracle mode, i.e. a training stream), the engine's
    `window` windows and windows_from_dialogue agree token for token, truncation included."""
    g = torch.Generator().manual_seed(3)
    conv = [torch.randint(0, 40, (int(n),), generator=g) for n in (5, 9, 3, 12, 7, 4)]
    labels = [2, None, 0, 3, None, 1]
    n_limit = 20
    rec = _Recorder(n_limit)
    ConversationEngine(rec, AUDIO_END, EMO, n_limit, emotion_tokens="oracle").run([conv], oracle_labels=[labels])
    windows = windows_from_dialogue(conv, labels, AUDIO_END, EMO, n_limit)
    scored = [i for i, lab in enumerate(labels) if lab is not None]
    assert [w.label for w in windows] == [labels[i] for i in scored]
    for w, i in zip(windows, scored):
        assert torch.equal(w.ids, rec.windows[i])
        assert w.ids.numel() <= n_limit and int(w.ids[-1]) == AUDIO_END
    # pinned: utterance 2's window = utt0, <audio_end>, gold <emo_2>, utt1, <audio_end> (no emotion: unscored), utt2
    expect = torch.cat([conv[0], torch.tensor([AUDIO_END, EMO[2]]), conv[1], torch.tensor([AUDIO_END]),
                        conv[2], torch.tensor([AUDIO_END])])[-n_limit:]
    assert torch.equal(windows[1].ids, expect)


def test_window_builder_rejects_bad_labels():
    with pytest.raises(ValueError, match="utterance 1: label 4"):
        windows_from_dialogue([torch.tensor([1]), torch.tensor([2])], [0, 4], AUDIO_END, EMO, 8)
    with pytest.raises(ValueError, match="2 utterances but 1 labels"):
        windows_from_dialogue([torch.tensor([1]), torch.tensor([2])], [0], AUDIO_END, EMO, 8)



def test_learns_a_task_that_needs_the_window_content(one_thread):
    train = _windows(*_toy_dialogues(1, 40))
    test = _windows(*_toy_dialogues(2, 20))
    clf, emb = _classifier()
    ids, mask, y = collate_windows(test)
    with torch.no_grad():
        before = (clf.eval()(ids, mask).argmax(-1) == y).float().mean().item()
    clf = train_classifier(clf, train, ClassifierTrainConfig(lr=3e-3, epochs=4, batch_size=8, progress=False))
    with torch.no_grad():
        after = (clf(ids, mask).argmax(-1) == y).float().mean().item()
    assert before < 0.4 and after > 0.65, (before, after)  # chance is 0.25
    assert torch.equal(clf.embedding.weight, emb.weight)  # the SLM rows never train


def test_seeded_runs_give_identical_weights(one_thread):
    windows = _windows(*_toy_dialogues(4, 4, n_utts=4))
    cfg = ClassifierTrainConfig(lr=1e-3, epochs=2, batch_size=4, progress=False)
    runs = [train_classifier(_classifier()[0], windows, cfg).state_dict() for _ in range(2)]
    other = train_classifier(_classifier()[0], windows, ClassifierTrainConfig(
        lr=1e-3, epochs=2, batch_size=4, seed=1, progress=False)).state_dict()
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert not all(torch.equal(runs[0][k], other[k]) for k in runs[0])  # the seed matters (order, dropout)


def test_collate_left_pads_like_the_engine():
    ids, mask, y = collate_windows([ClassifierWindow(torch.tensor([5, 40]), 1),
                                    ClassifierWindow(torch.tensor([1, 2, 3, 40]), 3)])
    assert ids.tolist() == [[0, 0, 5, 40], [1, 2, 3, 40]]
    assert mask.tolist() == [[0, 0, 1, 1], [1, 1, 1, 1]]
    assert y.tolist() == [1, 3]


def test_bad_training_input_is_named():
    clf, _ = _classifier()
    ok = ClassifierWindow(torch.tensor([1, 40]), 0)
    with pytest.raises(ValueError, match="no training windows"):
        train_classifier(clf, [])
    with pytest.raises(ValueError, match="training window 1: label 7"):
        train_classifier(clf, [ok, ClassifierWindow(torch.tensor([1, 40]), 7)])
    with pytest.raises(ValueError, match="training window 2: ids outside"):
        train_classifier(clf, [ok, ok, ClassifierWindow(torch.tensor([48, 40]), 0)])
    with pytest.raises(ConfigError, match="epochs"):
        ClassifierTrainConfig(epochs=0)
