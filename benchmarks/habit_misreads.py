"""Does a model read a held-out speaker's *habit* as an emotion? (a diagnostic, not a speed goal)

On the synthetic corpus every speaker has a habitual pitch, pitch range, tempo and loudness, and each
emotion shifts them by a known amount (corpus/synth_presets.py; both are written to the corpus's
generator_truth.json, which inference never reads). If a model calls a habitually fast speaker
angry on most turns, the emotions it predicts for him imply a faster tempo than his gold emotions
do. This script measures that, per held-out speaker and per method of a finished run:

    excess_d(speaker) = mean over his turns of shift_d(predicted) - shift_d(gold)

for d in pitch, range (eSpeak units, additive) and tempo, volume (log of the factor), and correlates
it across speakers with his habit on the same dimension (log for tempo and volume). r near +1 on a
dimension: the model's errors follow that habit, i.e. it learnt the training speakers' voices as
emotions; near 0: its errors do not come from that habit.

    .venv/bin/python benchmarks/habit_misreads.py runs/loso5 [runs/other ...]

A run's corpus is the manifest in its config.json, or the corpus it generated into RUN/corpus.
Prints a table per run and writes benchmarks/results/habit_misreads.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import markdown_table, run_script, write_results  # noqa: E402

from convmem.errors import ManifestError  # noqa: E402

DIMENSIONS = ("pitch", "range", "rate", "volume")
LOG_DIMENSIONS = ("rate", "volume")  # multiplicative in the generator


def _scale(d: str, v: float) -> float:
    return math.log(v) if d in LOG_DIMENSIONS else float(v)


def run_manifest(run: Path) -> Path:
    """RUN -> its corpus's manifest: the one in its config.json, or the corpus it generated."""
    from convmem.study.run_folder import CONFIG_FILE

    if not (run / CONFIG_FILE).is_file():
        raise ManifestError(f"{run}: no {CONFIG_FILE} (not a `convmem run` folder)")
    manifest = json.loads((run / CONFIG_FILE).read_text()).get("corpus", {}).get("manifest")
    return Path(manifest) if manifest else run / "corpus" / "manifest.jsonl"


def generator_truth(run: Path) -> dict:
    """RUN -> the generator truth of its corpus (speaker habits, emotion shifts). Raises ManifestError."""
    from convmem.corpus.synth import TRUTH_FILE

    truth = run_manifest(run).parent / TRUTH_FILE
    if not truth.is_file():
        raise ManifestError(f"{truth}: missing; only corpora made by `convmem synth` record speaker habits")
    return json.loads(truth.read_text())


def habit_misreads(preds: Path, truth: dict) -> dict:
    """-> {method: {"speakers": {speaker: {turns, excess: {d: float}}}, "r": {d: float | None}}}.

    r is None where it is undefined (fewer than 3 speakers, or no spread in habit or excess)."""
    shift = {e: {d: _scale(d, v) for d, v in s.items()} for e, s in truth["emotion_shift"].items()}
    habits = {s: {d: _scale(d, v["habit"][d]) for d in DIMENSIONS} for s, v in truth["speakers"].items()}
    turns: dict[str, dict[str, list[tuple[str, str]]]] = defaultdict(lambda: defaultdict(list))
    with open(preds, newline="") as f:
        for i, row in enumerate(csv.DictReader(f), start=2):
            if row.get("speaker") not in habits or row.get("gold") not in shift or row.get("predicted") not in shift:
                raise ManifestError(f"{preds}:{i}: speaker, gold or predicted not in the generator truth: "
                                    f"{row.get('speaker')!r}, {row.get('gold')!r}, {row.get('predicted')!r}")
            turns[row["method"]][row["speaker"]].append((row["gold"], row["predicted"]))
    out = {}
    for method, by_speaker in turns.items():
        speakers = {}
        for spk, pairs in sorted(by_speaker.items()):
            excess = {d: sum(shift[p][d] - shift[g][d] for g, p in pairs) / len(pairs) for d in DIMENSIONS}
            speakers[spk] = {"turns": len(pairs), "excess": excess}
        r = {d: _pearson([habits[s][d] for s in speakers], [speakers[s]["excess"][d] for s in speakers])
             for d in DIMENSIONS}
        out[method] = {"speakers": speakers, "r": r}
    return out


def _pearson(x: list[float], y: list[float]) -> float | None:
    import numpy as np

    if len(x) < 3 or np.std(x) == 0 or np.std(y) == 0:
        return None
    return float(np.corrcoef(x, y)[0, 1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, nargs="+", help="finished `convmem run` output folders")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/habit_misreads.json"))
    args = ap.parse_args(argv)
    results = {}
    rows = []
    for run in args.run:
        preds = run / "predictions.csv"
        if not preds.is_file():
            raise ManifestError(f"{run}: no predictions.csv (not a finished `convmem run` folder)")
        res = habit_misreads(preds, generator_truth(run))
        results[str(run)] = res
        for method, m in sorted(res.items()):
            rows.append([str(run), method, len(m["speakers"]),
                         *(float("nan") if m["r"][d] is None else m["r"][d] for d in DIMENSIONS)])
    print("r across held-out speakers: habit vs the excess shift implied by the predicted emotions")
    print(markdown_table(["run", "method", "speakers", *(f"r {d}" for d in DIMENSIONS)], rows))
    write_results(args.out, "habit_misreads", 0, {"results": results})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    run_script(main)
