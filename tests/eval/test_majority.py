"""The majority-class reference row and the `baseline` block it adds to results and report."""

import math

import numpy as np
import pytest

from convmem.corpus.types import Dialogue, Utterance
from convmem.errors import ConfigError
from convmem.eval.majority import majority_rows, training_prior
from convmem.eval.predictions import Prediction, table_from_predictions, write_predictions_csv
from convmem.eval.report import render_report
from convmem.eval.results import ResultsConfig, build_results, recompute_check, validate_results
from convmem.eval.stats import BootstrapConfig
from tests.eval.conftest import LABELS, META, make_predictions

CONFIG = ResultsConfig(bootstrap=BootstrapConfig(n_resamples=200, seed=1))


def _dialogue(name: str, session: str, emotions: list[str | None]) -> Dialogue:
    utts = [Utterance(f"{name}_T{i:03d}", f"{session}_{'AB'[i % 2]}", 2.0 * i, 2.0 * i + 1.5, e)
            for i, e in enumerate(emotions)]
    return Dialogue(name, session, utts)


TRAIN = [_dialogue("S01_D01", "S01", ["sad", "sad", "neu", None, "ang"]),
         _dialogue("S02_D01", "S02", ["sad", "hap", "sad", "neu"])]


def test_training_prior_counts_scored_training_utterances_only():
    np.testing.assert_allclose(training_prior(TRAIN, list(LABELS)), [2 / 8, 1 / 8, 4 / 8, 1 / 8])
    tie = [_dialogue("S01_D01", "S01", ["ang", "hap", "hap", "ang"])]
    assert LABELS[int(np.argmax(training_prior(tie, list(LABELS))))] == "hap"  # earlier label wins a tie
    with pytest.raises(ConfigError, match="no scored utterance"):
        training_prior([_dialogue("S01_D01", "S01", [None, None])], list(LABELS))


def test_rows_predict_the_training_majority_and_count_history_like_the_engine():
    test = [_dialogue("S03_D01", "S03", ["neu", None, "hap", "neu"])]
    tokens = {u.id: n for u, n in zip(test[0].utterances, (30, 5, 40, 50))}
    rows = majority_rows(TRAIN, test, tokens, LABELS, "loso_S03", n_limit=80, emotion_token=True)
    assert [r["utterance"] for r in rows] == ["S03_D01_T000", "S03_D01_T002", "S03_D01_T003"]
    assert {r["predicted"] for r in rows} == {"sad"}
    assert rows[0]["probs"] == pytest.approx([0.25, 0.125, 0.5, 0.125])
    # history: each earlier utterance's audio tokens + 2 (<audio_end>, emotion token); the
    # unscored turn counts too. Long context: history + own audio + <audio_end> > n_limit.
    assert [r["history_tokens"] for r in rows] == [0, 32 + 7, 32 + 7 + 42]
    assert [r["long_context"] for r in rows] == [False, False, True]
    assert [r["last_scored"] for r in rows] == [False, False, True]
    assert [r["position"] for r in rows] == [0, 2, 3]


def test_test_labels_never_change_the_prediction():
    tokens = {f"S03_D01_T{i:03d}": 10 for i in range(4)}
    a = majority_rows(TRAIN, [_dialogue("S03_D01", "S03", ["neu", "neu", "neu", "neu"])], tokens, LABELS, "f", 100, False)
    b = majority_rows(TRAIN, [_dialogue("S03_D01", "S03", ["ang", "hap", "ang", "sad"])], tokens, LABELS, "f", 100, False)
    assert [r["predicted"] for r in a] == [r["predicted"] for r in b] == ["sad"] * 4
    assert [r["probs"] for r in a] == [r["probs"] for r in b]


def _with_majority(seed: int = 2) -> list[Prediction]:
    rows = make_predictions(seed=seed, n_dialogues=8, accuracy={"window": 0.6, "none": 0.3})
    majority = [Prediction(**{**r.__dict__, "method": "majority", "predicted": "neu",
                              "probs": (0.4, 0.2, 0.2, 0.2), "write_loss": None})
                for r in rows if r.method == "window"]
    return rows + majority


def test_results_pair_every_method_with_the_majority_row(tmp_path):
    table = table_from_predictions(_with_majority(), LABELS)
    results = build_results(table, META, CONFIG)
    validate_results(results)
    base = results["baseline"]
    assert base["reference"] == "majority" and set(base["tests"]) == {"window", "none"}
    for m in ("window", "none"):
        t = base["tests"][m]["all"]
        want = results["methods"][m]["buckets"]["all"]["wa"] - results["methods"]["majority"]["buckets"]["all"]["wa"]
        assert math.isclose(t["delta_wa"], want, abs_tol=1e-12)
        assert t["ci"]["wa"][0] <= t["delta_wa"] <= t["ci"]["wa"][1]
    # window (60% right) beats a constant guess (~25% right on uniform gold); none (30%) does not clearly
    assert base["tests"]["window"]["all"]["ci"]["wa"][0] > 0
    write_predictions_csv(tmp_path / "p.csv", table)
    assert recompute_check(results, tmp_path / "p.csv") == []
    broken = {**results, "baseline": {"reference": "majority", "tests": {"majority": base["tests"]["window"]}}}
    with pytest.raises(Exception, match="baseline.tests.majority"):
        validate_results(broken)


def test_no_baseline_without_the_majority_row_and_report_column():
    plain = build_results(table_from_predictions(make_predictions(seed=2, n_dialogues=4), LABELS), META, CONFIG)
    assert "baseline" not in plain
    assert "vs `majority`" not in render_report(plain)
    results = build_results(table_from_predictions(_with_majority(), LABELS), META, CONFIG)
    report = render_report(results)
    assert "ΔWA vs `window` (all) | ΔWA vs `majority` (all)" in report
    assert "## Paired tests against `majority`" in report
    line = next(s for s in report.splitlines() if s.startswith("| SLLM, history in context"))
    assert "better" in line.split("|")[-2]  # the last column: window against the majority class
