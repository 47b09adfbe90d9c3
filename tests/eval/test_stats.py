import numpy as np
import pytest

from convmem.eval.metrics import bucket_mask, classification_metrics
from convmem.eval.stats import (BootstrapConfig, bootstrap_ci, bootstrap_rate_ci, cluster_confusions,
                                mcnemar_exact, paired_test, resample_weights)
from tests.eval.conftest import make_table

FAST = BootstrapConfig(n_resamples=400, seed=1)


def _method(table, m, bucket="all"):
    return table.select((table.method == m) & bucket_mask(table, bucket))


def test_resample_weights_draw_whole_dialogue_sets():
    w = resample_weights(7, BootstrapConfig(n_resamples=50, seed=2))
    assert w.shape == (50, 7) and (w.sum(axis=1) == 7).all() and (w >= 0).all()
    assert (w == resample_weights(7, BootstrapConfig(n_resamples=50, seed=2))).all()
    assert (w != resample_weights(7, BootstrapConfig(n_resamples=50, seed=3))).any()
    # each dialogue is drawn once per replicate on average
    big = resample_weights(5, BootstrapConfig(n_resamples=4000, seed=0))
    assert big.mean(axis=0) == pytest.approx(np.ones(5), abs=0.05)


def test_cluster_confusions_sum_to_the_pooled_matrix():
    t = _method(make_table(n_dialogues=6), "dpm")
    keys, counts = cluster_confusions(t.dialogue, t.gold, t.predicted, 4)
    assert keys.size == 12
    assert counts.sum(axis=0).tolist() == classification_metrics(t.gold, t.predicted, t.labels)["confusion"]


def test_ci_contains_point_estimate_and_narrows_with_more_dialogues():
    widths = []
    for n_dialogues in (6, 60):
        t = _method(make_table(n_dialogues=n_dialogues, seed=5), "dpm")
        point = classification_metrics(t.gold, t.predicted, t.labels)
        ci = bootstrap_ci(t.dialogue, t.gold, t.predicted, 4, FAST)
        for k in ("wa", "ua", "wf1"):
            assert ci[k][0] <= point[k] <= ci[k][1]
        widths.append(ci["wa"][1] - ci["wa"][0])
    assert widths[1] < 0.6 * widths[0]


def test_resampling_dialogues_widens_ci_when_errors_cluster():
    # 40 dialogues of 10 utterances, each dialogue entirely right or entirely wrong.
    rng = np.random.default_rng(0)
    dialogue = np.repeat([f"d{i}" for i in range(40)], 10).astype(object)
    gold = rng.integers(0, 4, 400)
    right = np.repeat(rng.random(40) < 0.6, 10)
    pred = np.where(right, gold, (gold + 1) % 4)
    by_dialogue = bootstrap_ci(dialogue, gold, pred, 4, FAST)["wa"]
    by_utterance = bootstrap_ci(np.arange(400).astype(str).astype(object), gold, pred, 4, FAST)["wa"]
    assert (by_dialogue[1] - by_dialogue[0]) > 2 * (by_utterance[1] - by_utterance[0])


def test_single_dialogue_has_no_ci():
    d = np.array(["only"] * 5, dtype=object)
    g = np.array([0, 1, 2, 3, 0])
    assert bootstrap_ci(d, g, g, 4, FAST) is None
    assert bootstrap_rate_ci(d, g == g, FAST) is None


def test_mcnemar_exact_pinned():
    a = np.array([True] * 10 + [False] * 2 + [True] * 5)
    b = np.array([False] * 10 + [True] * 2 + [True] * 5)
    res = mcnemar_exact(a, b)
    assert (res["b"], res["c"]) == (10, 2)
    assert res["p"] == pytest.approx(158 / 4096)  # 2 * P(X >= 10), X ~ Bin(12, 1/2)
    assert mcnemar_exact(a, a) == {"b": 0, "c": 0, "p": 1.0}


def _paired(accuracy, seed):
    t = make_table(n_dialogues=20, seed=seed, accuracy=accuracy)
    a, r = _method(t, "a"), _method(t, "window")
    assert (a.utterance == r.utterance).all()  # rows generated in the same order
    return paired_test(a.dialogue, a.gold, a.predicted, r.predicted, 4, FAST)


def test_paired_test_detects_a_planted_difference():
    res = _paired({"window": 0.5, "a": 0.8}, seed=11)
    assert res["delta"]["wa"] > 0.2
    assert res["ci"]["wa"][0] > 0 and res["p_bootstrap"]["wa"] < 0.01
    assert res["mcnemar"]["p"] < 0.001 and res["mcnemar"]["b"] > res["mcnemar"]["c"]


def test_paired_test_does_not_flag_a_null_difference():
    res = _paired({"window": 0.6, "a": 0.6}, seed=11)
    assert res["ci"]["wa"][0] < 0 < res["ci"]["wa"][1]
    assert res["p_bootstrap"]["wa"] > 0.05 and res["mcnemar"]["p"] > 0.05


def test_paired_test_of_identical_predictions():
    t = _method(make_table(n_dialogues=5), "dpm")
    res = paired_test(t.dialogue, t.gold, t.predicted, t.predicted, 4, FAST)
    assert res["delta"] == {"wa": 0.0, "ua": 0.0, "wf1": 0.0}
    assert res["p_bootstrap"]["wa"] == 1.0 and res["mcnemar"]["p"] == 1.0


def test_paired_test_on_no_shared_utterances():
    e = np.array([], dtype=np.int64)
    res = paired_test(np.array([], dtype=object), e, e, e, 4, FAST)
    assert res["n"] == 0 and res["delta"]["wa"] is None and res["ci"] is None


def test_bootstrap_config_rejects_nonsense():
    with pytest.raises(ValueError):
        BootstrapConfig(n_resamples=0)
    with pytest.raises(ValueError):
        BootstrapConfig(level=1.5)
