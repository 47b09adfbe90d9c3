import numpy as np
import pytest
import torch

from convmem.slm.stream import build_stream
from convmem.slm.vocab import EmotionVocab
from convmem.slm.windows import (IGNORE, Example, WindowConfig, audio_window, build_examples, chunk_bounds,
                                 collate, dense_examples, emotion_window, history_free_examples,
                                 paper_examples)

V = EmotionVocab.tiny(codebook_size=10, labels=("neu", "hap", "sad", "ang"))  # a_k = k+1, end 11, emo 12..15
I = IGNORE


def crafted():
    # ids: [1,2,3,11,13 | 4,5,11 | 6,7,8,9,11,14]; <audio_end> at 3, 7, 12
    return build_stream([np.array([0, 1, 2]), np.array([3, 4]), np.array([5, 6, 7, 8])], V, ["hap", None, "sad"])


@pytest.mark.parametrize("T, expected", [
    (4, (0, 0)),     # short history n=5 < n_o=8: n_p = 0, n_o = n
    (7, (0, 0)),     # exact boundary n = n_o: n_p = n - n_o = 0
    (9, (0, 2)),     # n_o <= n=10 < n_o + n_p: n_p = n - n_o = 2
    (11, (0, 4)),    # exact boundary n = n_o + n_p: full n_p = 4 from the stream start
    (29, (18, 22)),  # long history: n_p = 4 context + n_o = 8 targets ending at T
])
def test_eq4_audio_window(T, expected):
    start, first = audio_window(T, n_o=8, n_p=4)
    assert (start, first) == expected
    assert T + 1 - first == min(8, T + 1)  # n_o targets (eq. 4)


@pytest.mark.parametrize("T, start", [(3, 0), (5, 0), (6, 1), (40, 35)])
def test_eq6_emotion_window(T, start):
    assert emotion_window(T, n_q=6) == start  # n_q = n when n < n_q, exact boundary T+1 = 6


def test_paper_examples_share_one_window_when_nq_equals_no_plus_np():
    ex = paper_examples(crafted(), V, WindowConfig(n_o=4, n_p=3, n_q=7))
    assert len(ex) == 3  # one per utterance, including the unscored one (L_a only)
    e0, e1, e2 = ex
    assert e0.ids.tolist() == [1, 2, 3, 11]
    assert e0.la_targets.tolist() == [2, 3, 11, I]  # first token has no context: dropped
    assert e0.le_labels.tolist() == [I, I, I, 1]
    assert e1.ids.tolist() == [2, 3, 11, 13, 4, 5, 11]
    assert e1.la_targets.tolist() == [I, I, I, 4, 5, 11, I]  # gold <emo_hap> is input, never an L_a target
    assert (e1.le_labels == I).all()
    assert e2.ids.tolist() == [5, 11, 6, 7, 8, 9, 11]
    assert e2.la_targets.tolist() == [I, I, 7, 8, 9, 11, I]
    assert e2.le_labels.tolist() == [I] * 6 + [2]
    assert [e.n_keep for e in ex] == [4, 4, 5]


def test_paper_examples_split_when_emotion_window_differs():
    ex = paper_examples(crafted(), V, WindowConfig(n_o=4, n_p=3, n_q=5))
    assert len(ex) == 4
    la_only, le_only = ex[2], ex[3]
    assert la_only.ids.tolist() == [5, 11, 6, 7, 8, 9, 11] and (la_only.le_labels == I).all()
    assert le_only.ids.tolist() == [6, 7, 8, 9, 11]
    assert (le_only.la_targets == I).all() and le_only.le_labels.tolist() == [I, I, I, I, 2]


def test_history_free_examples_hold_one_scored_utterance_alone():
    ex = history_free_examples(crafted(), V, n_limit=16)
    assert len(ex) == 2  # the unscored middle utterance gets none
    a, b = ex
    assert a.ids.tolist() == [1, 2, 3, 11]
    assert a.la_targets.tolist() == [2, 3, 11, I] and a.le_labels.tolist() == [I, I, I, 1]
    assert b.ids.tolist() == [6, 7, 8, 9, 11]  # no history, no earlier emotion token
    assert b.la_targets.tolist() == [7, 8, 9, 11, I] and b.le_labels.tolist() == [I] * 4 + [2]
    # an utterance longer than n_limit keeps its last n_limit tokens, ending at <audio_end>
    assert history_free_examples(crafted(), V, n_limit=3)[1].ids.tolist() == [8, 9, 11]


@pytest.mark.parametrize("objective", ["dense", "paper"])
def test_build_examples_adds_history_free_examples_per_stream(objective):
    w = WindowConfig(n_o=4, n_p=3, n_q=7)
    plain = build_examples([crafted(), crafted()], V, objective, w, n_limit=8)
    both = build_examples([crafted(), crafted()], V, objective, w, n_limit=8, history_free=True)
    assert len(both) == len(plain) + 4
    alone = [e.ids.tolist() for e in history_free_examples(crafted(), V, 8)]
    assert [e.ids.tolist() for e in both[len(plain) // 2: len(plain) // 2 + 2]] == alone


def test_window_config_checked_against_n_limit():
    with pytest.raises(ValueError, match="exceed the model's n_limit 8"):
        build_examples([crafted()], V, "paper", WindowConfig(n_o=4, n_p=5, n_q=4), n_limit=8)
    with pytest.raises(ValueError, match="objective"):
        build_examples([crafted()], V, "other", WindowConfig(), n_limit=8)


def test_dense_chunks_cut_at_utterance_boundaries():
    s = crafted()
    assert chunk_bounds(s, 8) == [(0, 8), (8, 14)]
    assert chunk_bounds(s, 100) == [(0, 14)]
    # utterances longer than the limit are split, the last piece ending at the utterance's end
    assert chunk_bounds(s, 4) == [(0, 1), (1, 5), (5, 8), (8, 10), (10, 14)]
    ex = dense_examples(s, V, 8)
    assert [e.ids.tolist() for e in ex] == [[1, 2, 3, 11, 13, 4, 5, 11], [6, 7, 8, 9, 11, 14]]
    assert ex[0].la_targets.tolist() == [2, 3, 11, I, 4, 5, 11, I]
    assert ex[0].le_labels.tolist() == [I, I, I, 1, I, I, I, I]
    assert ex[1].la_targets.tolist() == [7, 8, 9, 11, I, I]
    assert ex[1].le_labels.tolist() == [I, I, I, I, 2, I]
    assert len(dense_examples(s, V, 4)) == 4  # the 1-token piece has no target


def test_dense_covers_every_scored_end_once_on_random_streams():
    rng = np.random.default_rng(3)
    for _ in range(20):
        n = int(rng.integers(1, 12))
        codes = [rng.integers(0, 10, int(rng.integers(0, 30))) for _ in range(n)]
        emos = [None if rng.random() < 0.3 else "neu" for _ in range(n)]
        s = build_stream(codes, V, emos)
        limit = int(rng.integers(4, 40))
        bounds = chunk_bounds(s, limit)
        assert bounds[0][0] == 0 and bounds[-1][1] == len(s)
        assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
        assert all(0 < e - b <= limit for b, e in bounds)
        ex = dense_examples(s, V, limit)
        assert sum(int((e.le_labels != I).sum()) for e in ex) == sum(x is not None for x in emos)


def test_collate_left_pads_and_keeps_only_target_logits():
    a = Example(torch.tensor([5, 6, 7]), torch.tensor([I, 7, I]), torch.tensor([I, I, 0]))
    b = Example(torch.tensor([1, 2, 3, 4, 5]), torch.tensor([I, I, I, 5, I]), torch.full((5,), I))
    batch = collate([a, b], pad_id=0)
    assert batch.input_ids.tolist() == [[0, 0, 5, 6, 7], [1, 2, 3, 4, 5]]
    assert batch.attention_mask.tolist() == [[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]]
    assert batch.position_ids.tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]]
    assert batch.la_targets.tolist() == [[I, I, I, 7, I], [I, I, I, 5, I]]
    assert batch.n_keep == 2 and batch.n_tokens == 8
    assert collate([a, b], pad_id=0, trim_logits=False).n_keep == 0
