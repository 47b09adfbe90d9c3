"""Offline clustering and online assignment of speaker embeddings."""

from __future__ import annotations

import numpy as np
import pytest

from convmem.errors import ConfigError
from convmem.speakers.cluster import OnlineSpeakers, cluster_embeddings
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
    emb = _voices([0, 1, 0, 2, 1, 2, 0], seed=4)
    online = OnlineSpeakers()
    assert [online.assign(e) for e in emb] == [f"spk{k + 1}" for k in cluster_embeddings(emb)]
    capped = OnlineSpeakers(n_speakers=2)
    assert {capped.assign(e) for e in emb} == {"spk1", "spk2"}


def test_bad_numbers_and_shapes_are_clear():
    for bad in (0, -1, 21, 2.5, True):
        with pytest.raises(ConfigError, match="number of speakers"):
            cluster_embeddings(_voices([0, 1]), n_speakers=bad)
    with pytest.raises(ValueError, match="items >= 1"):
        cluster_embeddings(np.zeros((0, 256)))
    assert parse_speakers("AUTO") == "auto" and parse_speakers(None) == "none" and parse_speakers("3") == 3
    with pytest.raises(ConfigError, match="--speakers must be auto, none or a number"):
        parse_speakers("two")
