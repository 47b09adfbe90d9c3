"""The context check: LOSO scores, oracle and causal feature sets, no leaks of gold or future."""

import numpy as np
import pytest

from convmem.corpus import context_check as cc
from convmem.corpus.types import EMOTIONS

SHIFT = np.array([[0, 0, 0, 0], [2.0, 1.0, 1.5, 0.2], [-2.0, -1.0, -2.0, -0.6], [1.0, 1.0, 3.0, 0.5]])


def _table(seed=0, sessions=4, dialogues=2, turns=40, habit_sd=3.0, noise=0.6) -> tuple[cc.TurnTable, np.ndarray]:
    """A prosody table drawn from the corpus's model: habit (spread > shift) + emotion shift + noise,
    sticky per-speaker emotions that open neutral."""
    rng = np.random.default_rng(seed)
    X, sess, spk, lab, prev_same, last_other, ref = [], [], [], [], [], [], []
    n = 0
    for s in range(sessions):
        habits = {f"S{s}_{c}": rng.normal(0, habit_sd, 4) for c in "AB"}
        for _ in range(dialogues):
            seen, last, state = {}, {}, {}
            for i in range(turns):
                who = f"S{s}_{'AB'[i % 2]}"
                e = state.get(who, 0)
                if who in state and rng.random() > 0.8:
                    e = int(rng.integers(4))
                state[who] = e
                X.append(habits[who] + SHIFT[e] + rng.normal(0, noise, 4))
                ref.append(habits[who])
                sess.append(f"S{s}"), spk.append(who), lab.append(e)
                prev_same.append(list(seen.get(who, [])))
                others = [v for k, v in last.items() if k != who]
                last_other.append(max(others) if others else -1)
                seen.setdefault(who, []).append(n)
                last[who] = n
                n += 1
    t = cc.TurnTable(np.array(X), np.array(sess), np.array(spk), np.array(lab), prev_same, np.array(last_other))
    return t, np.array(ref)


def test_oracle_and_context_beat_raw_when_habits_dominate():
    t, ref = _table()
    r = cc.evaluate(t, ref)
    assert r["n_scored"] == len(t.X) and r["folds"] == ["S0", "S1", "S2", "S3"]
    assert r["oracle"]["wa"] > 85 and r["raw"]["wa"] < 60
    assert r["causal"]["wa"] >= r["raw"]["wa"] + 10
    for k in ("raw", "oracle", "causal"):
        assert 0 <= r[k]["ua"] <= 100
    # the majority row predicts each fold's training majority: UA is exactly one class's recall
    y = t.label
    want = [np.bincount(y[t.session != s], minlength=4).argmax() for s in r["folds"]]
    hits = sum(int((y[t.session == s] == w).sum()) for s, w in zip(r["folds"], want))
    assert r["majority"]["wa"] == round(100 * hits / len(y), 2)
    assert "majority class" in cc.format_report({**r, "preset": "x", "seed": 0, "gaps_wa": {
        "oracle_minus_raw": 1.0, "causal_minus_raw": 1.0}, "bounds_wa": cc.GAP_BOUNDS,
        "directions": {"mean_minus_habit": {}, "all_intended": True}})


def test_causal_predictions_ignore_test_gold_labels():
    t, _ = _table(seed=1, sessions=3, turns=30)
    train = t.session != "S0"
    before = cc._causal_fold(t, train)
    t.label = t.label.copy()
    t.label[~train] = np.random.default_rng(5).integers(0, 4, int((~train).sum()))
    t.label[~train][::3] = -1
    assert np.array_equal(before, cc._causal_fold(t, train))


def test_causal_predictions_ignore_the_future():
    t, _ = _table(seed=2, sessions=3, turns=30)
    train = t.session != "S1"
    test_idx = np.flatnonzero(~train)
    cut = test_idx[len(test_idx) // 2]
    before = cc._causal_fold(t, train)
    t.X = t.X.copy()
    t.X[cut:][~train[cut:]] += 50.0  # wreck every later test turn
    after = cc._causal_fold(t, train)
    n_before_cut = int((test_idx < cut).sum())
    assert np.array_equal(before[:n_before_cut], after[:n_before_cut])
    assert not np.array_equal(before, after)


def test_unscored_turns_are_context_not_scored():
    t, ref = _table(seed=3, sessions=3, turns=30)
    t.label = t.label.copy()
    t.label[::5] = -1
    r = cc.evaluate(t, ref)
    assert r["n_scored"] == int((t.label >= 0).sum())


def test_direction_table_signs():
    t, ref = _table(seed=4)
    d = cc.direction_table(t, ref)
    assert set(d["mean_minus_habit"]) == set(EMOTIONS)
    assert d["all_intended"] and all(d["checks_vs_neu"].values())
    assert d["mean_minus_habit"]["sad"]["energy_db"] == pytest.approx(-2.0, abs=0.4)
    flipped = ref + 2 * SHIFT[3] * (t.label == 3)[:, None]  # anger now looks quieter than neutral
    assert not cc.direction_table(t, flipped)["all_intended"]


def test_single_session_is_refused():
    t, ref = _table(sessions=1)
    with pytest.raises(cc.ManifestError, match="at least 2 sessions"):
        cc.evaluate(t, ref)


@pytest.mark.slow
def test_default_preset_meets_the_context_gap_bounds(tmp_path):
    """The acceptance check: ~1 min on 2 cores (synthesis ~35 s, prosody + LOSO ~25 s)."""
    from convmem.corpus.synth import synthesize_corpus

    synthesize_corpus(tmp_path / "corpus", "default", seed=0, progress=False)
    r = cc.context_gap_report(tmp_path / "corpus" / "manifest.jsonl", progress=False)
    assert r["corpus"]["sessions"] == 5 and r["corpus"]["dialogues"] == 20
    assert r["gaps_wa"]["oracle_minus_raw"] >= cc.GAP_BOUNDS["oracle_minus_raw"]
    assert r["gaps_wa"]["causal_minus_raw"] >= cc.GAP_BOUNDS["causal_minus_raw"]
    assert r["meets_bounds"] and r["directions"]["all_intended"]
