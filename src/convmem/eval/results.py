"""results.json: every reported number, built from the predictions table alone.

The schema is documented in docs/results_schema.md and checked by `results_schema.validate_results`. `recompute_check` rebuilds everything from the predictions with the settings
stored in the results and lists every number that differs.

Folds are pooled: a bucket's metrics count the utterances of all folds together (the dialogue is
the bootstrap unit); per-fold metrics and their mean and sd over folds are kept beside them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from convmem.fileio import atomic_write_json
from convmem.eval.majority import METHOD as MAJORITY
from convmem.eval.metrics import BUCKETS, HEADLINE_METRICS, bucket_mask, classification_metrics, point_metrics
from convmem.eval.predictions import PredictionTable, read_predictions_csv
from convmem.eval.results_schema import REQUIRED_META, SCHEMA_VERSION, ResultsSchemaError, validate_results
from convmem.eval.stats import BootstrapConfig, bootstrap_ci, bootstrap_rate_ci, paired_test

__all__ = ["ResultsConfig", "ResultsSchemaError", "SCHEMA_VERSION", "build_results", "recompute_check",
           "validate_results", "write_results_json", "results_config_of", "history_bin_edges"]

# History bins as multiples of n_limit: below, around and beyond the window is what matters.
HISTORY_BIN_MULTIPLES = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)


@dataclass(frozen=True)
class ResultsConfig:
    """How results are built.

    reference: method every other is tested against (paired tests skipped if it is absent).
    failures_per_method / min_failure_utterances: the worst dialogues listed per method, among
    dialogues with at least that many scored utterances.
    """

    bootstrap: BootstrapConfig = field(default_factory=BootstrapConfig)
    reference: str = "window"
    failures_per_method: int = 3
    min_failure_utterances: int = 3


def build_results(table: PredictionTable, meta: dict, config: ResultsConfig = ResultsConfig(),
                  cost: dict | None = None) -> dict:
    """Build the results object (see docs/results_schema.md) from N prediction rows.

    Args:
        table: the predictions (all folds, all methods).
        meta: run description, passed through; must hold corpus, folds, seeds, n_limit (int or
            None) and may hold config, commit, timings, caveat, ...; must be JSON-serialisable.
        cost: optional per-method cost figures, passed through ({method: {name: number}}).
    """
    _check_meta(meta)
    if len(table) == 0:
        raise ResultsSchemaError("predictions: no rows; nothing to evaluate")
    try:
        json.dumps(cost)
    except (TypeError, ValueError) as exc:
        raise ResultsSchemaError(f"cost: not JSON-serialisable ({exc})") from None
    labels = table.labels
    methods = {}
    for m in tqdm(table.methods, desc="metrics per method", unit="method", leave=False, disable=None):
        methods[m] = _method_results(table.select(table.method == m), config.bootstrap)
    edges = history_bin_edges(table.history_tokens, meta.get("n_limit"))
    out = {
        "schema_version": SCHEMA_VERSION,
        "meta": meta,
        "labels": list(labels),
        "buckets": list(BUCKETS),
        "n_rows": len(table),
        "settings": {"bootstrap": {"unit": "dialogue", "n_resamples": config.bootstrap.n_resamples,
                                   "seed": config.bootstrap.seed, "level": config.bootstrap.level},
                     "reference": config.reference,
                     "failures_per_method": config.failures_per_method,
                     "min_failure_utterances": config.min_failure_utterances},
        "methods": methods,
        "paired": {"reference": config.reference, "tests": paired_tests(table, config.reference, config.bootstrap)},
        "curves": {"accuracy_vs_history": _accuracy_vs_history(table, edges, config.bootstrap),
                   "write_loss_by_position": _write_loss_by_position(table)},
        "failures": _failures(table, config),
        "cost": cost,
    }
    if MAJORITY in table.methods:
        # every method against the majority class as well: "has it learnt anything?"
        out["baseline"] = {"reference": MAJORITY, "tests": paired_tests(table, MAJORITY, config.bootstrap)}
    return out


def _check_meta(meta: dict) -> None:
    if not isinstance(meta, dict):
        raise ResultsSchemaError(f"meta: expected a dict, got {type(meta).__name__}")
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise ResultsSchemaError(f"meta: missing required keys {missing}")
    try:
        json.dumps(meta)
    except (TypeError, ValueError) as exc:
        raise ResultsSchemaError(f"meta: not JSON-serialisable ({exc})") from None


def _bucket_block(sub: PredictionTable, bucket: str, boot: BootstrapConfig) -> dict:
    sel = sub.select(bucket_mask(sub, bucket))
    out = classification_metrics(sel.gold, sel.predicted, sub.labels)
    out["n_dialogues"] = int(np.unique(sel.dialogue.astype(str)).size)
    out["ci"] = bootstrap_ci(sel.dialogue, sel.gold, sel.predicted, len(sub.labels), boot) if len(sel) else None
    return out


def _method_results(sub: PredictionTable, boot: BootstrapConfig) -> dict:
    buckets = {b: _bucket_block(sub, b, boot) for b in BUCKETS}
    per_fold = {}
    for fold in sub.folds:
        fsub = sub.select(sub.fold == fold)
        per_fold[fold] = {}
        for b in BUCKETS:
            sel = fsub.select(bucket_mask(fsub, b))
            per_fold[fold][b] = {**point_metrics(sel.gold, sel.predicted, len(sub.labels)),
                                 "n_dialogues": int(np.unique(sel.dialogue.astype(str)).size)}
    summary = {}
    for b in BUCKETS:
        summary[b] = {}
        for m in HEADLINE_METRICS:
            vals = [per_fold[f][b][m] for f in per_fold if per_fold[f][b][m] is not None]
            summary[b][m] = {"mean": float(np.mean(vals)) if vals else None,
                             "sd": float(np.std(vals, ddof=1)) if len(vals) > 1 else None,
                             "n_folds": len(vals)}
    return {"buckets": buckets, "per_fold": per_fold, "fold_summary": summary}


def paired_tests(table: PredictionTable, ref: str, bootstrap: BootstrapConfig) -> dict:
    """Every method of `table` against `ref` in each bucket, on the utterances both scored:
    {method: {bucket: {"n", "n_dialogues", "delta_wa"/"delta_ua"/"delta_wf1", "ci", "p_bootstrap",
    "mcnemar_b", "mcnemar_c", "mcnemar_p"}}} ({} when `ref` is absent)."""
    if ref not in table.methods:
        return {}
    tests = {}
    for m in table.methods:
        if m == ref:
            continue
        tests[m] = {}
        for b in BUCKETS:
            a = table.select((table.method == m) & bucket_mask(table, b))
            r = table.select((table.method == ref) & bucket_mask(table, b))
            # Inner join on the utterance: only utterances both methods scored are compared.
            r_index = {(f, d, u): i for i, (f, d, u) in enumerate(zip(r.fold, r.dialogue, r.utterance))}
            ia, ir = [], []
            for i, key in enumerate(zip(a.fold, a.dialogue, a.utterance)):
                j = r_index.get(key)
                if j is not None:
                    ia.append(i)
                    ir.append(j)
            ia, ir = np.asarray(ia, dtype=np.int64), np.asarray(ir, dtype=np.int64)
            res = paired_test(a.dialogue[ia], a.gold[ia], a.predicted[ia], r.predicted[ir],
                              len(table.labels), bootstrap)
            tests[m][b] = {"n": res["n"], "n_dialogues": res["n_dialogues"],
                           **{f"delta_{k}": v for k, v in res["delta"].items()},
                           "ci": res["ci"], "p_bootstrap": res["p_bootstrap"],
                           "mcnemar_b": res["mcnemar"]["b"], "mcnemar_c": res["mcnemar"]["c"],
                           "mcnemar_p": res["mcnemar"]["p"]}
    return tests


def history_bin_edges(history_tokens: np.ndarray, n_limit: int | None) -> list[int]:
    """Bin edges over history length (bins are [lo, hi); the last edge is max + 1).

    With n_limit: 0 and multiples of n_limit (HISTORY_BIN_MULTIPLES) below the longest history;
    without: up to 8 quantile bins.
    """
    top = int(history_tokens.max()) + 1 if history_tokens.size else 1
    if n_limit:
        inner = [int(round(k * n_limit)) for k in HISTORY_BIN_MULTIPLES]
    else:
        inner = [int(q) for q in np.quantile(history_tokens, np.linspace(0, 1, 9)[1:-1])] if history_tokens.size else []
    return sorted({0, *[e for e in inner if 0 < e < top], top})


def _accuracy_vs_history(table: PredictionTable, edges: list[int], boot: BootstrapConfig) -> dict:
    bins = np.searchsorted(np.asarray(edges), table.history_tokens, side="right") - 1
    out = {"bin_edges": edges, "methods": {}}
    for m in table.methods:
        row = {"n": [], "correct": [], "wa": [], "ci": []}
        for k in range(len(edges) - 1):
            sel = (table.method == m) & (bins == k)
            hits = table.gold[sel] == table.predicted[sel]
            row["n"].append(int(sel.sum()))
            row["correct"].append(int(hits.sum()))
            row["wa"].append(float(hits.mean()) if hits.size else None)
            row["ci"].append(bootstrap_rate_ci(table.dialogue[sel], hits, boot) if hits.size else None)
        out["methods"][m] = row
    return out


def _write_loss_by_position(table: PredictionTable) -> dict:
    out = {}
    for m in table.methods:
        sel = (table.method == m) & np.isfinite(table.write_loss)
        if not sel.any():
            continue
        pos, loss = table.position[sel], table.write_loss[sel]
        row = {"position": [], "n": [], "mean": [], "sd": []}
        for p in np.unique(pos):
            v = loss[pos == p]
            row["position"].append(int(p))
            row["n"].append(int(v.size))
            row["mean"].append(float(v.mean()))
            row["sd"].append(float(v.std(ddof=1)) if v.size > 1 else None)
        out[m] = row
    return out


def _failures(table: PredictionTable, config: ResultsConfig) -> list[dict]:
    out = []
    for m in table.methods:
        sub = table.select(table.method == m)
        groups: dict[tuple[str, str], list[int]] = {}
        for i, fd in enumerate(zip(sub.fold.tolist(), sub.dialogue.tolist())):
            groups.setdefault(fd, []).append(i)
        cands = []
        for (f, d), rows in sorted(groups.items()):
            if len(rows) < config.min_failure_utterances:
                continue
            rows = np.asarray(rows)[np.argsort(sub.position[rows], kind="stable")]
            gold, pred = sub.gold[rows], sub.predicted[rows]
            cands.append((float((gold == pred).mean()), -len(rows), f, d, gold, pred))
        cands.sort(key=lambda c: c[:4])
        for acc, neg_n, f, d, gold, pred in cands[:config.failures_per_method]:
            wrong = [(int(g), int(p)) for g, p in zip(gold, pred) if g != p]
            top = max(set(wrong), key=lambda gp: (wrong.count(gp), -gp[0], -gp[1])) if wrong else None
            out.append({"method": m, "fold": f, "dialogue": d, "n": -neg_n, "accuracy": acc,
                        "gold": [table.labels[i] for i in gold],
                        "predicted": [table.labels[i] for i in pred],
                        "top_confusion": None if top is None else
                        {"gold": table.labels[top[0]], "predicted": table.labels[top[1]],
                         "count": wrong.count(top)}})
    return out


def results_config_of(results: dict) -> ResultsConfig:
    """The ResultsConfig a results object was built with (from its `settings`)."""
    s = results["settings"]
    b = s["bootstrap"]
    return ResultsConfig(bootstrap=BootstrapConfig(n_resamples=b["n_resamples"], seed=b["seed"], level=b["level"]),
                         reference=s["reference"], failures_per_method=s["failures_per_method"],
                         min_failure_utterances=s["min_failure_utterances"])


def recompute_check(results: dict, predictions: PredictionTable | str | Path, rel_tol: float = 1e-9) -> list[str]:
    """Rebuild every number from `predictions` (a table or a CSV path) and compare.

    Returns a list of mismatches ("path: stored X, recomputed Y"); empty when all recompute.
    `meta` and `cost` are passed-through inputs, not computed, and are not compared.
    """
    table = predictions if isinstance(predictions, PredictionTable) else read_predictions_csv(
        predictions, labels=results.get("labels"))
    fresh = build_results(table, results["meta"], results_config_of(results), cost=results.get("cost"))
    mismatches: list[str] = []
    for key in fresh:
        if key not in ("meta", "cost"):
            _compare(results.get(key), fresh[key], key, rel_tol, mismatches)
    return mismatches


def _compare(stored, fresh, path: str, rel_tol: float, out: list[str]) -> None:
    if isinstance(fresh, dict):
        if not isinstance(stored, dict) or set(stored) != set(fresh):
            out.append(f"{path}: keys {sorted(stored) if isinstance(stored, dict) else stored!r} "
                       f"!= recomputed {sorted(fresh)}")
            return
        for k in fresh:
            _compare(stored[k], fresh[k], f"{path}.{k}", rel_tol, out)
    elif isinstance(fresh, list):
        if not isinstance(stored, list) or len(stored) != len(fresh):
            out.append(f"{path}: stored {stored!r} != recomputed {fresh!r}")
            return
        for i, (s, f) in enumerate(zip(stored, fresh)):
            _compare(s, f, f"{path}[{i}]", rel_tol, out)
    elif isinstance(fresh, float) and isinstance(stored, (int, float)) and not isinstance(stored, bool):
        if not math.isclose(stored, fresh, rel_tol=rel_tol, abs_tol=1e-12):
            out.append(f"{path}: stored {stored!r} != recomputed {fresh!r}")
    elif stored != fresh or type(stored) is not type(fresh):
        out.append(f"{path}: stored {stored!r} != recomputed {fresh!r}")


def write_results_json(path: str | Path, results: dict) -> None:
    """Validate `results` and write it atomically (a bad object writes nothing)."""
    validate_results(results)
    atomic_write_json(path, results)
