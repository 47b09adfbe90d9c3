import json

import pytest

from convmem.eval import write_evaluation
from convmem.eval.report import MIN_UTTERANCES
from convmem.eval.results import ResultsConfig, recompute_check
from convmem.eval.stats import BootstrapConfig
from tests.eval.conftest import META, make_table

CONFIG = ResultsConfig(bootstrap=BootstrapConfig(n_resamples=100, seed=0))
COST = {"dpm": {"seconds_per_utterance": 0.8, "peak_rss_mb": 950.0}, "window": {"seconds_per_utterance": 0.2}}


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    table = make_table(n_dialogues=6, accuracy={"window": 0.6, "dpm": 0.7, "classifier": 0.5,
                                                "window_full": 0.62, "dpm_stride1024": 0.66})
    outputs = write_evaluation(table, META, out, CONFIG, cost=COST)
    return outputs, json.loads(outputs.results.read_text()), outputs.report.read_text()


def test_all_outputs_written_atomically(evaluation):
    outputs, results, _ = evaluation
    out = outputs.results.parent
    names = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert names == ["plots/accuracy_vs_history.png", "plots/confusion.png", "plots/per_class_f1.png",
                     "plots/write_loss_by_position.png", "predictions.csv", "report.md", "results.json"]
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert recompute_check(results, outputs.predictions) == []


def test_report_header_and_paper_tables(evaluation):
    _, results, report = evaluation
    assert report.startswith("# Emotion recognition in long conversations: synthetic-test")
    assert "folds f1,f2 | seeds 0 | n_limit 400" in report and "commit `abc1234`" in report
    assert "> **Caveat:** synthetic conversations" in report
    for heading in ("## Headline", "## Table 1: memory vs no memory vs classifier",
                    "## Table 3: truncated vs full context window", "## Other memories and stepping strategies",
                    "## Long-context bucket", "## Paired tests against `window`", "## Per-class precision",
                    "## WA % per fold", "## Cost", "## Failure cases", "## Figures"):
        assert heading in report, heading
    # Table 1's complete-dialogue row for DPM carries the stored WA and its CI, in percent.
    blk = results["methods"]["dpm"]["buckets"]["complete_dialogue"]
    cell = f"{100 * blk['wa']:.2f} [{100 * blk['ci']['wa'][0]:.2f}, {100 * blk['ci']['wa'][1]:.2f}]"
    table1 = report.split("## Table 1")[1].split("## Table 3")[0]
    assert f"| SLLM-DPM (temporary LoRA memory) (`dpm`) | {cell} |" in table1
    assert "`classifier`" in table1 and "`window_full`" not in table1
    assert "`dpm_stride1024`" in report.split("## Other memories")[1].split("## Long-context")[0]
    assert "| `dpm` | 0.8 | 950 |" in report


def test_small_buckets_are_flagged_as_too_few(evaluation):
    _, results, report = evaluation
    n = results["methods"]["dpm"]["buckets"]["complete_dialogue"]["n"]
    assert n < MIN_UTTERANCES  # 12 dialogues -> 12 complete-dialogue utterances
    assert f"| {n} (too few) |" in report
    assert "nothing can be concluded from such a row" in report


def test_paired_rows_give_a_verdict_from_the_ci(evaluation):
    _, results, report = evaluation
    t = results["paired"]["tests"]["classifier"]["all"]
    lo, hi = t["ci"]["wa"]
    verdict = "better" if lo > 0 else "worse" if hi < 0 else "no detectable difference"
    assert f"| `classifier` | all | {t['n']} | {t['n_dialogues']} | {100 * t['delta_wa']:+.2f} " \
           f"[{100 * lo:+.2f}, {100 * hi:+.2f}] {verdict} |" in report


def test_failures_and_figures_are_linked(evaluation):
    outputs, results, report = evaluation
    first = results["failures"][0]
    assert f"`{first['dialogue']}` ({first['fold']})" in report
    for name, path in outputs.plots.items():
        assert f"]({path.relative_to(outputs.report.parent)})" in report, name


def test_report_without_reference_or_long_context():
    from convmem.eval.report import render_report
    from convmem.eval.results import build_results

    table = make_table(n_dialogues=3, accuracy={"dpm": 0.7, "none": 0.4}, n_limit=10**6)
    results = build_results(table, {**META, "n_limit": 10**6}, CONFIG)
    report = render_report(results)
    assert "Not run: reference method `window` is absent" in report
    assert "## Table 3" not in report
    long_rows = report.split("## Long-context bucket")[1].split("##")[0]
    assert "| SLLM-DPM (temporary LoRA memory) (`dpm`) | — | — | — | 0 (too few) | 0 |" in long_rows
    assert "No figures were drawn for this report." in report


def test_report_says_when_no_write_loss_was_recorded():
    from convmem.eval.report import render_report
    from convmem.eval.results import build_results

    results = build_results(make_table(n_dialogues=2, write_loss_methods=()), META, CONFIG)
    report = render_report(results, {"confusion": "plots/confusion.png"})
    assert "![Confusion matrices](plots/confusion.png)" in report
    assert "No method recorded a memory write loss, so there is no write-loss figure." in report


@pytest.mark.parametrize("marks", [False, True])
def test_none_is_named_by_what_it_read(tmp_path, marks):
    """With prosody marks on, `none` reads the speaker's earlier turns: report and results.json say so."""
    import dataclasses

    from convmem.study.report import write_outputs
    from tests.eval.conftest import LABELS, make_predictions, write_fold_predictions

    rows = [dataclasses.asdict(p) for p in make_predictions(n_dialogues=6, folds=("f1",),
                                                            accuracy={"none": 0.5, "window": 0.6})]
    write_fold_predictions(tmp_path, rows, ("none", "window"))
    write_outputs(tmp_path, ["f1"], ["none", "window"], LABELS, {**META, "folds": ["f1"], "prosody_marks": marks}, 50, 0)
    results = json.loads((tmp_path / "results.json").read_text())
    report = (tmp_path / "report.md").read_text()
    named = results["meta"]["method_labels"]["none"]
    assert ("speaker-relative prosody marks" in named) is marks
    assert ("current utterance only" in named) is not marks
    assert f"{named} (`none`)" in report
    assert ("so `none` reads speaker history" in report) is marks
