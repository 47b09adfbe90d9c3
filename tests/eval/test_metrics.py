import numpy as np
import pytest

from convmem.eval.metrics import (BUCKETS, bucket_mask, classification_metrics, metrics_from_confusions,
                                  point_metrics)
from tests.eval.conftest import LABELS, make_table

# Worked by hand: gold neu neu neu hap hap sad, predicted neu neu hap hap sad sad; ang absent.
GOLD = np.array([0, 0, 0, 1, 1, 2])
PRED = np.array([0, 0, 1, 1, 2, 2])


def test_hand_worked_example():
    m = classification_metrics(GOLD, PRED, LABELS)
    assert m["n"] == 6
    assert m["wa"] == pytest.approx(4 / 6)
    assert m["ua"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)  # over the 3 classes present in gold
    assert m["wf1"] == pytest.approx((3 * 0.8 + 2 * 0.5 + 1 * (2 / 3)) / 6)
    assert m["confusion"] == [[2, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    pc = m["per_class"]
    assert pc["neu"] == {"precision": 1.0, "recall": pytest.approx(2 / 3), "f1": pytest.approx(0.8), "support": 3}
    assert pc["sad"]["precision"] == 0.5 and pc["sad"]["recall"] == 1.0
    # ang: never in gold, never predicted -> nothing to score, null rather than 0
    assert pc["ang"] == {"precision": None, "recall": None, "f1": None, "support": 0}


def test_class_never_predicted_has_null_precision_and_zero_recall():
    m = classification_metrics(np.array([0, 1, 1]), np.array([0, 0, 0]), LABELS)
    assert m["per_class"]["hap"]["precision"] is None
    assert m["per_class"]["hap"]["recall"] == 0.0
    assert m["per_class"]["hap"]["f1"] == 0.0
    assert m["ua"] == pytest.approx(0.5)


def test_empty_selection_gives_nulls_not_a_crash():
    m = classification_metrics(np.array([], dtype=np.int64), np.array([], dtype=np.int64), LABELS)
    assert m["n"] == 0 and m["wa"] is None and m["ua"] is None and m["wf1"] is None
    assert m["confusion"] == [[0] * 4] * 4
    assert all(v["support"] == 0 and v["f1"] is None for v in m["per_class"].values())
    assert point_metrics(np.array([], dtype=np.int64), np.array([], dtype=np.int64), 4)["wa"] is None


def test_vectorised_metrics_agree_with_sklearn_path():
    rng = np.random.default_rng(3)
    for _ in range(20):
        n = int(rng.integers(1, 60))
        gold = rng.integers(0, 3, n)  # class 3 often absent
        pred = rng.integers(0, 4, n)
        ref = classification_metrics(gold, pred, LABELS)
        fast = metrics_from_confusions(np.asarray(ref["confusion"]))
        for k in ("wa", "ua", "wf1"):
            assert fast[k] == pytest.approx(ref[k], abs=1e-12)
            assert point_metrics(gold, pred, 4)[k] == pytest.approx(ref[k], abs=1e-12)


def test_buckets_select_the_flagged_rows():
    t = make_table(n_dialogues=4, folds=("f1",))
    assert bucket_mask(t, "all").all()
    assert (bucket_mask(t, "long_context") == t.long_context).all()
    last = bucket_mask(t, "complete_dialogue")
    assert last.sum() == 4 * len(t.methods)  # one per dialogue and method
    with pytest.raises(ValueError, match="unknown bucket"):
        bucket_mask(t, "short")
    assert BUCKETS == ("all", "long_context", "complete_dialogue")


def test_error_runs_are_consecutive_wrong_turns_of_one_dialogue_in_order():
    from types import SimpleNamespace as R

    from convmem.eval.metrics import error_runs

    def rows(method, dialogue, marks):  # marks in position order, given shuffled below
        return [R(method=method, fold="f", dialogue=dialogue, position=i, gold="neu",
                  predicted="hap" if wrong else "neu") for i, wrong in enumerate(marks)]

    got = error_runs(list(reversed(rows("a", "d1", [1, 1, 0, 1, 1, 1]))) + rows("a", "d2", [1, 0, 0])
                     + rows("b", "d1", [0, 0]))
    assert got["a"] == {"runs": 3, "mean": 2.0, "longest": 3}  # 2 and 3 in d1 (never joined across d2), 1 in d2
    assert got["b"] == {"runs": 0, "mean": 0.0, "longest": 0}
