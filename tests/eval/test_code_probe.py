from __future__ import annotations

import numpy as np
import pytest

from convmem.corpus.types import Dialogue, Utterance
from convmem.errors import ConfigError
from convmem.eval.code_probe import bag_of_codes, loso_probe

LABELS = ["neu", "hap", "sad", "ang"]


def test_bag_of_codes():
    bag = bag_of_codes(np.array([0, 0, 2, 2, 2, 1]), 4)
    assert bag.shape == (6,)
    assert np.allclose(bag[:4], [2 / 6, 1 / 6, 3 / 6, 0]) and bag[4] == pytest.approx(np.log(6))
    assert bag[5] == pytest.approx(2 / 5)  # 0->2 and 2->1
    assert bag_of_codes(np.array([3]), 4)[5] == 0.0


def relative_corpus(seed: int = 0):
    """Each speaker has a habitual mix of 4 codes and an emotion raises its own code's share: the
    habits differ more than emotions move them, so one turn alone is ambiguous across speakers and
    the speaker's earlier turns reveal the emotion."""
    rng = np.random.default_rng(seed)
    dialogues, codes = [], {}
    for s in range(4):
        for d in range(2):
            utts = []
            habits = 2.0 * rng.dirichlet(np.full(4, 0.5), size=2)
            for t in range(40):
                spk, emo = t % 2, int(rng.integers(0, 4))
                p = habits[spk] + 0.5 * np.eye(4)[emo]
                uid = f"S{s}_D{d}_T{t}"
                codes[uid] = rng.choice(4, size=60, p=p / p.sum())
                utts.append(Utterance(uid, f"S{s}_D{d}_{spk}", t, t + 1, LABELS[emo] if t > 5 else None))
            dialogues.append(Dialogue(f"S{s}_D{d}", f"S{s}", utts))
    return dialogues, codes


def test_relative_probe_reads_speaker_relative_codes_that_alone_cannot():
    dialogues, codes = relative_corpus()
    seen = []

    def fold_codes(train):
        seen.append(tuple(train))
        return codes

    out = loso_probe(dialogues, fold_codes, 4, LABELS)
    assert seen == [("S1", "S2", "S3"), ("S0", "S2", "S3"), ("S0", "S1", "S3"), ("S0", "S1", "S2")]
    assert out["n"] == 8 * 34 and set(out["folds"]) == {"S0", "S1", "S2", "S3"}
    assert out["alone"]["wa"] < 45 and out["relative"]["wa"] > out["alone"]["wa"] + 25


def test_errors():
    dialogues, codes = relative_corpus()
    with pytest.raises(ConfigError, match=">= 2 sessions"):
        loso_probe([d for d in dialogues if d.session == "S0"], lambda tr: codes, 4, LABELS)
    with pytest.raises(ConfigError, match="no scored utterance"):
        loso_probe(dialogues, lambda tr: codes, 4, ["xyz"])
