"""Evaluation: predictions table -> metrics with bootstrap CIs and paired tests -> results.json,
report.md and plots. `write_evaluation` does all of it in one call (the study's report, eval-model).

Scoring only: nothing here trains or runs a study (a test walks these imports).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from convmem.errors import ConvmemError
from convmem.eval.predictions import PredictionTable, write_predictions_csv
from convmem.eval.results import ResultsConfig, build_results, recompute_check, write_results_json


@dataclass(frozen=True)
class EvaluationOutputs:
    """Paths written by `write_evaluation`; plots maps figure name -> path."""

    predictions: Path
    results: Path
    report: Path
    plots: dict[str, Path]


def write_evaluation(table: PredictionTable, meta: dict, out_dir: str | Path,
                     config: ResultsConfig = ResultsConfig(), cost: dict | None = None,
                     check: bool = True) -> EvaluationOutputs:
    """Write predictions.csv, results.json, plots/*.png and report.md into `out_dir`.

    Each file is written atomically. With `check`, results are rebuilt from the written CSV and
    any number that does not recompute raises ConvmemError before results.json is written.

    cost ({method: {name: number}}, e.g. seconds per utterance) is shown in the report only:
    results.json holds no wall-clock figures, so a resumed or re-run study writes the same file
    (`results.json`'s "cost" stays null; the caller keeps cost in a file of its own).
    """
    from convmem.eval.plots import write_plots  # matplotlib only when figures are drawn
    from convmem.eval.report import write_report

    out_dir = Path(out_dir)
    pred_path = out_dir / "predictions.csv"
    write_predictions_csv(pred_path, table)
    results = build_results(table, meta, config)
    if check:
        mismatches = recompute_check(results, pred_path)
        if mismatches:
            raise ConvmemError(f"{pred_path}: results do not recompute from the written predictions:\n  "
                               + "\n  ".join(mismatches[:10]))
    res_path = out_dir / "results.json"
    write_results_json(res_path, results)
    shown = {**results, "cost": cost}
    plots = write_plots(shown, out_dir)
    report = write_report(shown, out_dir, plots)
    return EvaluationOutputs(predictions=pred_path, results=res_path, report=report,
                             plots={k: out_dir / v for k, v in plots.items()})
