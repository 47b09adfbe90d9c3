"""Seeded synthetic prediction tables for the eval tests (no model, no data files)."""

from __future__ import annotations

import numpy as np
import pytest

from convmem.eval.predictions import Prediction, PredictionTable, table_from_predictions

LABELS = ("neu", "hap", "sad", "ang")
META = {"corpus": "synthetic-test", "folds": ["f1", "f2"], "seeds": [0], "n_limit": 400,
        "config": "configs/test.yaml", "commit": "abc1234", "caveat": "synthetic conversations"}


def make_predictions(seed: int = 0, n_dialogues: int = 12, folds=("f1", "f2"),
                     accuracy: dict[str, float] | None = None, labels=LABELS,
                     utterances=(3, 9), tokens=(40, 120), n_limit: int = 400,
                     write_loss_methods=("dpm",)) -> list[Prediction]:
    """Rows for `n_dialogues` dialogues per fold; each method is right with its probability.

    Method outcomes are drawn independently per utterance, so two methods with equal accuracy
    differ only by chance. Wrong predictions pick another label uniformly.
    """
    accuracy = accuracy or {"window": 0.6, "dpm": 0.7, "classifier": 0.5}
    rng = np.random.default_rng(seed)
    e = len(labels)
    rows = []
    for fold in folds:
        for d in range(n_dialogues):
            dlg = f"{fold}_d{d:02d}"
            n_utt = int(rng.integers(utterances[0], utterances[1] + 1))
            own = rng.integers(tokens[0], tokens[1] + 1, size=n_utt)
            hist = np.concatenate([[0], np.cumsum(own)[:-1]])
            gold = rng.integers(0, e, size=n_utt)
            for m, acc in accuracy.items():
                for k in range(n_utt):
                    right = rng.random() < acc
                    pred = gold[k] if right else (gold[k] + rng.integers(1, e)) % e
                    probs = rng.dirichlet(np.ones(e))
                    probs[[pred, probs.argmax()]] = probs[[probs.argmax(), pred]]
                    rows.append(Prediction(
                        dialogue=dlg, utterance=f"{dlg}_u{k:02d}", fold=fold, method=m, position=k,
                        gold=labels[gold[k]], predicted=labels[pred], probs=tuple(probs.tolist()),
                        history_tokens=int(hist[k]), long_context=bool(hist[k] + own[k] > n_limit),
                        last_scored=k == n_utt - 1,
                        write_loss=float(2.0 + rng.normal() * 0.1 - 0.05 * k) if m in write_loss_methods and k > 0 else None,
                        session=fold, speaker=f"{dlg}_{'MF'[k % 2]}"))
    return rows


def make_table(**kw) -> PredictionTable:
    return table_from_predictions(make_predictions(**kw), kw.get("labels", LABELS))


@pytest.fixture
def table() -> PredictionTable:
    return make_table()


def write_fold_predictions(out, rows: list[dict], methods, fold: str = "f1", extra_cost: dict | None = None) -> None:
    """`out`/folds/<fold>/predictions_<method>.json as a study writes them, from `rows` (dicts of
    Prediction); `extra_cost` {method: {key: value}} joins that method's cost block."""
    import json

    fold_dir = out / "folds" / fold
    fold_dir.mkdir(parents=True, exist_ok=True)
    for method in methods:
        mine = [r for r in rows if r["method"] == method]
        assert mine, method
        cost = {"seconds": 1.0, "utterances": len(mine), "audio_seconds": 10.0, **(extra_cost or {}).get(method, {})}
        (fold_dir / f"predictions_{method}.json").write_text(json.dumps({"rows": mine, "cost": cost}))
