"""The study report says what MAL did: the share of `none`'s predictions each memory changes and
MAL's gate / residual norm by utterance position, in report.md and results.json's meta."""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest

from convmem.eval.results import ResultsSchemaError, validate_results
from convmem.memory.mal_probe import MALProbe
from convmem.study.report import write_outputs
from tests.eval.conftest import LABELS, META, make_predictions, write_fold_predictions


def _probe_sums() -> dict:
    import torch

    probe = MALProbe()
    mask = torch.ones(2, 3, dtype=torch.bool)
    h = torch.ones(2, 3, 4)
    for pos in range(3):  # residual = 0.1 h at every read, gate 0.25
        probe(torch.full((2, 3, 4), 0.25), 0.1 * h, h, mask, torch.tensor([pos, pos]))
    return probe.sums()


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    rows = [dataclasses.asdict(p) for p in make_predictions(n_dialogues=6, folds=("f1",),
                                                            accuracy={"none": 0.5, "mal": 0.6})]
    write_fold_predictions(out, rows, ("none", "mal"), extra_cost={"mal": {"mal_probe": _probe_sums()}})
    write_outputs(out, ["f1"], ["none", "mal"], LABELS, {**META, "folds": ["f1"]}, 50, 0)
    by_key = {}
    for r in rows:
        by_key.setdefault((r["dialogue"], r["utterance"]), {})[r["method"]] = r["predicted"]
    expected = sum(v["none"] != v["mal"] for v in by_key.values()) / len(by_key)
    return json.loads((out / "results.json").read_text()), (out / "report.md").read_text(), expected, len(by_key)


def test_changed_share_and_mal_diagnostics_reach_results_and_report(study) -> None:
    results, report, expected, n = study
    meta = results["meta"]
    assert meta["changed_vs_none"] == {"mal": {"n": n, "changed": pytest.approx(expected)}}
    assert 0 < expected < 1
    rows = meta["mal_diagnostics"]["mal"]
    assert [r["positions"] for r in rows] == ["0", "1", "2-3"] and [r["n"] for r in rows] == [2, 2, 2]
    assert all(r["gate"] == pytest.approx(0.25) and r["residual_ratio"] == pytest.approx(0.1) for r in rows)
    section = report.split("## What the memories change")[1].split("\n## ")[0]
    assert f"| SLLM-MAL (memory as a layer) (`mal`) | {100 * expected:.2f} | {n} |" in section
    assert "| 2-3 | 2 | 0.250 | 0.1 |" in section


def test_schema_rejects_a_malformed_diagnostic(study) -> None:
    results = study[0]
    validate_results(results)
    bad = copy.deepcopy(results)
    bad["meta"]["mal_diagnostics"]["mal"][0]["gate"] = 1.5
    bad["meta"]["changed_vs_none"]["mal"]["changed"] = -0.1
    with pytest.raises(ResultsSchemaError, match=r"mal_diagnostics.mal\[0\].gate.*|changed_vs_none.mal.changed"):
        validate_results(bad)
