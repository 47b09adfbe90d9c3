"""Acceptance: results.json follows its schema and every metric recomputes from predictions.csv.

The recomputation here is deliberately independent of convmem.eval: csv module + plain numpy.
"""

import copy
import csv
import json
import math
from collections import defaultdict

import numpy as np
import pytest

from convmem.eval.predictions import write_predictions_csv
from convmem.eval.results import (ResultsConfig, ResultsSchemaError, build_results, recompute_check,
                                  validate_results, write_results_json)
from convmem.eval.stats import BootstrapConfig
from tests.eval.conftest import LABELS, META, make_table

CONFIG = ResultsConfig(bootstrap=BootstrapConfig(n_resamples=200, seed=4))
ACCURACY = {"window": 0.55, "dpm": 0.7, "classifier": 0.45, "my_new_memory": 0.6}


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
    table = make_table(n_dialogues=10, accuracy=ACCURACY, write_loss_methods=("dpm", "my_new_memory"))
    write_predictions_csv(out / "predictions.csv", table)
    write_results_json(out / "results.json", build_results(table, META, CONFIG, cost={"dpm": {"s_per_utt": 0.4}}))
    with open(out / "predictions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return json.loads((out / "results.json").read_text()), rows, out


def _metrics(rows):
    """WA/UA/WF1, per class and confusion of CSV rows, by hand."""
    e = len(LABELS)
    conf = np.zeros((e, e), dtype=int)
    for r in rows:
        conf[LABELS.index(r["gold"]), LABELS.index(r["predicted"])] += 1
    n = int(conf.sum())
    tp, support, npred = np.diag(conf), conf.sum(axis=1), conf.sum(axis=0)
    per_class = {}
    for i, lab in enumerate(LABELS):
        fp, fn = npred[i] - tp[i], support[i] - tp[i]
        per_class[lab] = {"precision": tp[i] / npred[i] if npred[i] else None,
                          "recall": tp[i] / support[i] if support[i] else None,
                          "f1": 2 * tp[i] / (2 * tp[i] + fp + fn) if (2 * tp[i] + fp + fn) else None,
                          "support": int(support[i])}
    if n == 0:
        return {"n": 0, "wa": None, "ua": None, "wf1": None, "per_class": per_class, "confusion": conf.tolist()}
    recalls = [per_class[lab]["recall"] for lab in LABELS if per_class[lab]["support"]]
    wf1 = sum((per_class[lab]["f1"] or 0.0) * per_class[lab]["support"] for lab in LABELS) / n
    return {"n": n, "wa": np.trace(conf) / n, "ua": float(np.mean(recalls)), "wf1": wf1,
            "per_class": per_class, "confusion": conf.tolist()}


BUCKET_OF = {"all": lambda r: True, "long_context": lambda r: r["long_context"] == "true",
             "complete_dialogue": lambda r: r["last_scored"] == "true"}


def _close(a, b):
    return (a is None and b is None) or (a is not None and b is not None and math.isclose(a, b, abs_tol=1e-12))


def test_results_follow_the_schema(written):
    results, rows, _ = written
    validate_results(results)
    assert results["schema_version"] == "1.0"
    assert results["meta"]["corpus"] == "synthetic-test" and results["cost"] == {"dpm": {"s_per_utt": 0.4}}
    assert list(results["methods"]) == list(ACCURACY)  # unknown method names handled generically
    assert results["n_rows"] == len(rows)


def test_every_bucket_metric_recomputes_from_the_csv(written):
    results, rows, _ = written
    for m in ACCURACY:
        for b, keep in BUCKET_OF.items():
            sel = [r for r in rows if r["method"] == m and keep(r)]
            ours, stored = _metrics(sel), results["methods"][m]["buckets"][b]
            assert stored["n"] == ours["n"] > 0
            assert stored["n_dialogues"] == len({r["dialogue"] for r in sel})
            for k in ("wa", "ua", "wf1"):
                assert _close(stored[k], ours[k]), (m, b, k)
                assert stored["ci"][k][0] <= stored[k] <= stored["ci"][k][1]
            assert stored["confusion"] == ours["confusion"]
            for lab in LABELS:
                for k in ("precision", "recall", "f1", "support"):
                    assert _close(stored["per_class"][lab][k], ours["per_class"][lab][k]), (m, b, lab, k)
            for fold in ("f1", "f2"):
                fsel = [r for r in sel if r["fold"] == fold]
                fm = _metrics(fsel)
                stored_f = results["methods"][m]["per_fold"][fold][b]
                assert stored_f["n"] == fm["n"]
                assert all(_close(stored_f[k], fm[k]) for k in ("wa", "ua", "wf1"))
            fold_wa = [_metrics([r for r in sel if r["fold"] == f])["wa"] for f in ("f1", "f2")]
            assert _close(results["methods"][m]["fold_summary"][b]["wa"]["mean"], float(np.mean(fold_wa)))


def test_paired_tests_recompute_from_the_csv(written):
    results, rows, _ = written
    assert results["paired"]["reference"] == "window"
    assert set(results["paired"]["tests"]) == set(ACCURACY) - {"window"}
    for m, per_bucket in results["paired"]["tests"].items():
        for b, keep in BUCKET_OF.items():
            ref = {(r["fold"], r["dialogue"], r["utterance"]): r for r in rows if r["method"] == "window" and keep(r)}
            pairs = [(r, ref[k]) for r in rows if r["method"] == m and keep(r)
                     for k in [(r["fold"], r["dialogue"], r["utterance"])] if k in ref]
            t = per_bucket[b]
            assert t["n"] == len(pairs)
            assert _close(t["delta_wa"], _metrics([a for a, _ in pairs])["wa"] - _metrics([r for _, r in pairs])["wa"])
            assert _close(t["delta_ua"], _metrics([a for a, _ in pairs])["ua"] - _metrics([r for _, r in pairs])["ua"])
            right_a = [a["gold"] == a["predicted"] for a, _ in pairs]
            right_r = [r["gold"] == r["predicted"] for _, r in pairs]
            b_ = sum(x and not y for x, y in zip(right_a, right_r))
            c_ = sum(y and not x for x, y in zip(right_a, right_r))
            assert (t["mcnemar_b"], t["mcnemar_c"]) == (b_, c_)
            tail = sum(math.comb(b_ + c_, k) for k in range(min(b_, c_) + 1)) / 2 ** (b_ + c_)
            assert t["mcnemar_p"] == pytest.approx(min(1.0, 2 * tail))
            assert t["ci"]["wa"][0] <= t["delta_wa"] <= t["ci"]["wa"][1]
            assert 0 < t["p_bootstrap"]["wa"] <= 1


def test_curves_and_failures_recompute_from_the_csv(written):
    results, rows, _ = written
    curve = results["curves"]["accuracy_vs_history"]
    edges = curve["bin_edges"]
    assert edges[0] == 0 and edges[-1] == max(int(r["history_tokens"]) for r in rows) + 1
    assert 400 in edges  # n_limit is a bin edge
    for m, row in curve["methods"].items():
        for k, (lo, hi) in enumerate(zip(edges, edges[1:])):
            sel = [r for r in rows if r["method"] == m and lo <= int(r["history_tokens"]) < hi]
            assert row["n"][k] == len(sel)
            assert row["correct"][k] == sum(r["gold"] == r["predicted"] for r in sel)
    losses = results["curves"]["write_loss_by_position"]
    assert set(losses) == {"dpm", "my_new_memory"}
    by_pos = defaultdict(list)
    for r in rows:
        if r["method"] == "dpm" and r["write_loss"]:
            by_pos[int(r["position"])].append(float(r["write_loss"]))
    assert losses["dpm"]["position"] == sorted(by_pos)
    assert losses["dpm"]["mean"] == pytest.approx([np.mean(by_pos[p]) for p in sorted(by_pos)])
    assert len(results["failures"]) == 3 * len(ACCURACY)
    for f in results["failures"]:
        sel = sorted((r for r in rows if r["method"] == f["method"] and r["dialogue"] == f["dialogue"]),
                     key=lambda r: int(r["position"]))
        assert f["gold"] == [r["gold"] for r in sel] and f["predicted"] == [r["predicted"] for r in sel]
        assert f["accuracy"] == pytest.approx(np.mean([r["gold"] == r["predicted"] for r in sel]))
        others = {d: np.mean([r["gold"] == r["predicted"] for r in rows if r["method"] == f["method"] and r["dialogue"] == d])
                  for d in {r["dialogue"] for r in rows}}
        assert sum(acc < f["accuracy"] for acc in others.values()) < 3  # among the worst 3


def test_recompute_check_passes_and_catches_tampering(written):
    results, _, out = written
    assert recompute_check(results, out / "predictions.csv") == []
    bad = copy.deepcopy(results)
    bad["methods"]["dpm"]["buckets"]["all"]["wa"] += 0.01
    bad["methods"]["window"]["buckets"]["long_context"]["confusion"][0][0] += 1
    bad["paired"]["tests"]["dpm"]["all"]["ci"]["ua"][0] -= 0.001
    found = recompute_check(bad, out / "predictions.csv")
    assert sorted(s.split(":")[0] for s in found) == [
        "methods.dpm.buckets.all.wa", "methods.window.buckets.long_context.confusion[0][0]",
        "paired.tests.dpm.all.ci.ua[0]"]


@pytest.mark.parametrize("mutate,message", [
    (lambda r: r.pop("paired"), "results: missing keys ['paired']"),
    (lambda r: r["methods"]["dpm"]["buckets"]["all"]["per_class"]["neu"].update(support=999), "supports sum to"),
    (lambda r: r["methods"]["dpm"]["buckets"]["all"].update(wa=1.5), "methods.dpm.buckets.all.wa: expected a number in [0.0, 1]"),
    (lambda r: r["methods"]["dpm"]["buckets"]["all"]["ci"].update(wa=[0.9, 0.1]), "lo <= hi"),
    (lambda r: r["meta"].pop("seeds"), "meta: missing keys ['seeds']"),
    (lambda r: r["methods"]["dpm"]["per_fold"].pop("f1"), "fold counts sum to"),
    (lambda r: r.update(schema_version="0.9"), "schema_version: expected '1.0'"),
])
def test_validate_rejects_broken_results(written, mutate, message):
    bad = copy.deepcopy(written[0])
    mutate(bad)
    with pytest.raises(ResultsSchemaError) as err:
        validate_results(bad)
    assert message in str(err.value)


def test_empty_bucket_and_absent_reference(tmp_path):
    # n_limit far above any history: no utterance is long-context; no `window` method to pair with.
    table = make_table(n_dialogues=3, accuracy={"dpm": 0.7, "none": 0.4}, n_limit=10**6)
    meta = {**META, "n_limit": 10**6}
    results = build_results(table, meta, CONFIG)
    validate_results(results)
    blk = results["methods"]["dpm"]["buckets"]["long_context"]
    assert blk["n"] == 0 and blk["wa"] is None and blk["ci"] is None and blk["confusion"] == [[0] * 4] * 4
    assert results["paired"]["tests"] == {}
    write_results_json(tmp_path / "results.json", results)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]


def test_bad_meta_and_invalid_results_write_nothing(tmp_path):
    table = make_table(n_dialogues=2)
    with pytest.raises(ResultsSchemaError, match="missing required keys"):
        build_results(table, {"corpus": "x"}, CONFIG)
    results = build_results(table, META, CONFIG)
    results["labels"] = []
    with pytest.raises(ResultsSchemaError):
        write_results_json(tmp_path / "results.json", results)
    assert list(tmp_path.iterdir()) == []


def test_history_bins_follow_n_limit_or_quantiles():
    from convmem.eval.results import history_bin_edges

    hist = np.array([0, 50, 120, 390, 410, 900, 5000])
    assert history_bin_edges(hist, 400) == [0, 100, 200, 400, 800, 1600, 3200, 5001]
    edges = history_bin_edges(hist, None)
    assert edges[0] == 0 and edges[-1] == 5001 and edges == sorted(set(edges))
