"""A study's outputs: every fold's per-method predictions -> predictions.csv, results.json, plots
and report.md (scored by `convmem.eval.write_evaluation`) and cost.json; the headline text.

Cost (seconds per utterance, real-time factor) goes to cost.json and the report, never into
results.json, so a resumed run's results.json is the uninterrupted run's byte for byte.
"""

from __future__ import annotations

import json
from pathlib import Path

from convmem.fileio import atomic_write_json


def finish_report(cfg, out: Path, folds: list[str], methods: list[str]) -> Path:
    """Merge every fold's predictions into results.json, predictions.csv, plots and report.md."""
    meta = {
        "corpus": cfg.corpus.title(), "caveat": cfg.corpus.caveat, "folds": folds, "seeds": [cfg.seed],
        "n_limit": cfg.slm.n_limit, "config": cfg.name, "methods": methods, "commit": code_commit(),
        "prosody_marks": bool(cfg.slm.prosody_marks),
    }
    if cfg.folds.exclude_sessions:  # said, so a validation study's figures name what they never saw
        meta["excluded_sessions"] = list(cfg.folds.exclude_sessions)
    return write_outputs(out, folds, methods, tuple(cfg.corpus.labels), meta, cfg.eval.bootstrap, cfg.seed)


def write_outputs(out: Path, folds: list[str], methods: list[str], labels: tuple[str, ...], meta: dict,
                  bootstrap: int, seed: int) -> Path:
    """`out`/folds/<fold>/predictions_<method>.json of every fold and method -> predictions.csv,
    results.json (`meta` passed through; checked to recompute from the CSV), cost.json, plots and
    report.md in `out`, each written atomically. Returns the report's path.

    meta["prosody_marks"] (the models read speaker-relative marks) decides each method's label, and
    the labels go into results.json's meta ("method_labels"), so results name what `none` read;
    a MAL probe's sums become meta "mal_diagnostics", a DPM write tally's meta "dpm_writes"."""
    from convmem.eval import write_evaluation
    from convmem.eval.predictions import Prediction, table_from_predictions
    from convmem.eval.results import ResultsConfig
    from convmem.eval.stats import BootstrapConfig

    from convmem.study.sharding import SUMMED_COSTS, merge_sums

    preds, cost = [], {}
    sums: dict[str, dict] = {k: {} for k in SUMMED_COSTS}  # cost key -> {method: sums over folds}
    for fold in folds:
        for method in methods:
            blob = json.loads((out / "folds" / fold / f"predictions_{method}.json").read_text())
            for r in blob["rows"]:
                preds.append(Prediction.from_row(r))
            c = cost.setdefault(method, {"seconds": 0.0, "utterances": 0, "audio_seconds": 0.0})
            for k, v in blob["cost"].items():
                if k in SUMMED_COSTS:
                    sums[k][method] = merge_sums(k, sums[k].get(method), v)
                elif k != "processes":
                    c[k] = c.get(k, 0) + v
    table = table_from_predictions(preds, labels, origin=str(out))
    rcfg = ResultsConfig(bootstrap=BootstrapConfig(n_resamples=bootstrap, seed=seed))
    cost_table = {m: {"seconds_per_utterance": c["seconds"] / max(1, c["utterances"]),
                      "real_time_factor": c["seconds"] / max(1e-9, c["audio_seconds"]),
                      "utterances": c["utterances"],
                      **({"unmatched_gold_utterances": c["unmatched_gold_utterances"]}
                         if "unmatched_gold_utterances" in c else {})} for m, c in cost.items()}
    meta = described(meta, methods, preds)
    if sums["mal_probe"]:
        from convmem.memory.mal_probe import by_position

        meta["mal_diagnostics"] = {m: by_position(p) for m, p in sums["mal_probe"].items()}
    if sums["dpm_writes"]:
        from convmem.memory.dpm_writes import rates

        meta["dpm_writes"] = {m: rates(s) for m, s in sums["dpm_writes"].items()}
    outputs = write_evaluation(table, meta, out, rcfg, cost=cost_table)
    atomic_write_json(out / "cost.json", cost_table)
    return outputs.report


def described(meta: dict, methods: list[str], preds) -> dict:
    """`meta` with what the scores alone do not say: each method's label ("method_labels"; with
    meta["prosody_marks"] `none` is named as reading the speaker's earlier turns) and the share
    of `none`'s predictions each memory changes ("changed_vs_none", when `none` ran), and each
    method's runs of consecutive errors along a dialogue ("error_runs": copying its own mistakes)."""
    from convmem.memory import registry

    marks = bool(meta.get("prosody_marks", False))
    labels_of = {m: registry.label(m, marks) for m in methods}
    meta = {**meta, "method_labels": {m: lab for m, lab in labels_of.items() if lab}}
    changed = changed_vs_none(preds)
    if changed:
        meta["changed_vs_none"] = changed
    from convmem.eval.metrics import error_runs

    runs = error_runs(preds)
    if runs:
        meta["error_runs"] = runs
    return meta


def changed_vs_none(preds) -> dict:
    """{method: {"n": utterances both scored, "changed": fraction whose predicted label differs
    from `none`'s}} for every method but `none` (empty without a `none` row): how much a memory
    moves the utterance-alone decision, whether or not it moves it the right way."""
    base = {(p.fold, p.dialogue, p.utterance): p.predicted for p in preds if p.method == "none"}
    counts: dict[str, list[int]] = {}
    for p in preds:
        key = (p.fold, p.dialogue, p.utterance)
        if p.method != "none" and key in base:
            c = counts.setdefault(p.method, [0, 0])
            c[0] += 1
            c[1] += p.predicted != base[key]
    return {m: {"n": n, "changed": k / n} for m, (n, k) in counts.items()}


def code_commit() -> str:
    """The code version that produced the figures (git commit of the package's checkout)."""
    import subprocess

    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return sha or "unknown"


def headline(out: Path) -> str:
    """A short text table of WA/UA/WF1 per method (all utterances and long context)."""
    res = json.loads((Path(out) / "results.json").read_text())
    lines = [f"{'method':<14}{'bucket':<19}{'n':>6}{'WA':>8}{'UA':>8}{'WF1':>8}"]
    for m, blk in res["methods"].items():
        for b in ("all", "long_context", "complete_dialogue"):
            x = blk["buckets"].get(b)
            if not x or not x.get("n"):
                continue
            f = lambda v: "   -  " if v is None else f"{100 * v:6.1f}"  # noqa: E731
            lines.append(f"{m:<14}{b:<19}{x['n']:>6}{f(x['wa']):>8}{f(x['ua']):>8}{f(x['wf1']):>8}")
    return "\n".join(lines)
