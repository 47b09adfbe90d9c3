"""Offline clustering and online assignment of speaker embeddings."""

from __future__ import annotations

import numpy as np
import pytest

from convmem.errors import ConfigError
from convmem.speakers.cluster import SAME_SPEAKER, cluster_embeddings, merge_small
from convmem.speakers.online import OnlineSpeakers
from convmem.speakers.options import parse_speakers


def _voices(order, seed=0, spread=0.15):
    """Unit vectors around one random centre per voice, in the given voice order."""
    rng = np.random.default_rng(seed)
    centres = np.abs(rng.standard_normal((3, 256)))
    out = []
    for v in order:
        x = centres[v] + spread * rng.standard_normal(256) * centres[v].std()
        out.append(x / np.linalg.norm(x))
    return np.stack(out).astype(np.float32)


def test_two_voices_two_labels_numbered_by_first_appearance():
    emb = _voices([1, 0, 1, 1, 0, 0, 1])
    assert cluster_embeddings(emb).tolist() == [0, 1, 0, 0, 1, 1, 0]
    assert cluster_embeddings(emb, n_speakers=2).tolist() == [0, 1, 0, 0, 1, 1, 0]
    assert cluster_embeddings(emb, n_speakers=1).tolist() == [0] * 7


def test_one_voice_is_one_speaker_when_estimated():
    assert set(cluster_embeddings(_voices([2] * 6)).tolist()) == {0}


def test_online_equals_offline_on_separated_voices():
    emb = _voices([0, 1, 0, 2, 1, 2, 0, 2, 1], seed=4)
    seconds = np.full(len(emb), 2.0)
    online = OnlineSpeakers()
    got = [online.assign(e, s) for e, s in zip(emb, seconds)]
    offline = [f"spk{k + 1}" for k in cluster_embeddings(emb, durations=seconds)]
    assert offline == ["spk1", "spk2", "spk1", "spk3", "spk2", "spk3", "spk1", "spk3", "spk2"]
    # a voice's first turn (2 s, under MIN_SPEAKER_S) takes a known name; from its second on, its own
    firsts = {1, 3}
    assert [g for i, g in enumerate(got) if i not in firsts] == [o for i, o in enumerate(offline) if i not in firsts]
    assert [got[i] for i in sorted(firsts)] == ["spk1", "spk1"] and online.speakers == 3
    capped = OnlineSpeakers(n_speakers=2)
    assert {capped.assign(e) for e in emb} == {"spk1", "spk2"}


def test_scattered_short_turns_are_two_voices_not_many():
    # a voice whose turns scatter (short, acted): a plain cut at SAME_SPEAKER over-splits it
    order = [0, 1] * 10
    emb = _voices(order, seed=1, spread=1.2)
    from sklearn.cluster import AgglomerativeClustering

    plain = AgglomerativeClustering(n_clusters=None, distance_threshold=1 - SAME_SPEAKER, metric="cosine",
                                    linkage="average").fit_predict(emb)
    assert len(set(plain)) > 2
    labels = cluster_embeddings(emb, durations=np.full(len(order), 1.2))
    assert labels.tolist() == [0, 1] * 10


def test_small_clusters_merge_into_their_nearest():
    emb = _voices([0, 0, 0, 1, 1, 1, 2], seed=2).astype(np.float64)
    # voice 2's one item is 5% of the time: it joins the nearer of 0 and 1
    weights = np.array([3.0, 3, 3, 3, 3, 3, 0.9])
    merged = merge_small(emb, weights, np.array([0, 0, 0, 1, 1, 1, 2]))
    near = int(np.argmax([emb[6] @ emb[:3].sum(0), emb[6] @ emb[3:6].sum(0)]))
    assert merged.tolist() == [0, 0, 0, 1, 1, 1, near]
    # a cluster over both MIN_SHARE and MIN_SPEAKER_S stays
    assert merge_small(emb, np.full(7, 3.0), np.array([0, 0, 0, 1, 1, 1, 2])).tolist() == [0, 0, 0, 1, 1, 1, 2]


def test_bad_numbers_and_shapes_are_clear():
    for bad in (0, -1, 21, 2.5, True):
        with pytest.raises(ConfigError, match="number of speakers"):
            cluster_embeddings(_voices([0, 1]), n_speakers=bad)
    with pytest.raises(ValueError, match="items >= 1"):
        cluster_embeddings(np.zeros((0, 256)))
    assert parse_speakers("AUTO") == "auto" and parse_speakers(None) == "none" and parse_speakers("3") == 3
    with pytest.raises(ConfigError, match="--speakers must be auto, none or a number"):
        parse_speakers("two")
