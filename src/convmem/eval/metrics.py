"""Point metrics of emotion recognition: WA, UA, WF1, per-class P/R/F1 and the confusion matrix.

Definitions (as in the DPM paper and the IEMOCAP literature):
- WA, weighted accuracy: plain accuracy over utterances.
- UA, unweighted accuracy: mean per-class recall over the classes PRESENT IN GOLD of the counted
  utterances. A class with no gold utterance has no recall; averaging a 0 (or skipping it
  silently in some classes and not others) would make UA depend on which classes a small bucket
  happens to hold, so it is left out and its per-class recall is null.
- WF1: per-class F1 weighted by gold support (classes absent from gold weigh 0).
- per-class precision is null when the class was never predicted, recall null when it has no gold
  utterance, F1 null when both hold (there is nothing to score).
- An empty selection (n = 0) gives null metrics and an all-zero confusion matrix, never a crash.

Buckets select which scored utterances count:
- "all": every scored utterance (each predicted with its full history, streaming);
- "long_context": utterances whose history + own tokens exceed n_limit, where memory matters;
- "complete_dialogue": the last scored utterance of each dialogue (the paper's Table 1, top half).
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

from convmem.eval.predictions import PredictionTable

BUCKETS = ("all", "long_context", "complete_dialogue")
HEADLINE_METRICS = ("wa", "ua", "wf1")


def bucket_mask(table: PredictionTable, bucket: str) -> np.ndarray:
    """bool[N]: the rows of `table` counted in `bucket` (one of BUCKETS)."""
    if bucket == "all":
        return np.ones(len(table), dtype=bool)
    if bucket == "long_context":
        return table.long_context.copy()
    if bucket == "complete_dialogue":
        return table.last_scored.copy()
    raise ValueError(f"unknown bucket {bucket!r}; expected one of {BUCKETS}")


def _nullable(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def classification_metrics(gold: np.ndarray, predicted: np.ndarray, labels: tuple[str, ...]) -> dict:
    """Metrics of one selection of utterances.

    Args:
        gold, predicted: int64[n] label indices into `labels` (E labels).
    Returns:
        {"n", "wa", "ua", "wf1", "per_class": {label: {"precision", "recall", "f1", "support"}},
         "confusion": int[E][E] (rows gold, columns predicted, in label order)}; metrics are
        fractions in [0, 1] or None (see module docstring).
    """
    n_labels = len(labels)
    idx = list(range(n_labels))
    n = int(gold.shape[0])
    confusion = confusion_matrix(gold, predicted, labels=idx) if n else np.zeros((n_labels, n_labels), int)
    if n == 0:
        per_class = {lab: {"precision": None, "recall": None, "f1": None, "support": 0} for lab in labels}
        return {"n": 0, "wa": None, "ua": None, "wf1": None, "per_class": per_class,
                "confusion": confusion.astype(int).tolist()}
    # One sklearn pass gives every per-class figure; UA and WF1 are averages of it (the same
    # definitions as recall_score(average="macro", labels=present) and f1_score(average="weighted")).
    prec, rec, f1, support = precision_recall_fscore_support(gold, predicted, labels=idx,
                                                             zero_division=np.nan)
    present = support > 0
    per_class = {lab: {"precision": _nullable(prec[i]), "recall": _nullable(rec[i]),
                       "f1": _nullable(f1[i]), "support": int(support[i])}
                 for i, lab in enumerate(labels)}
    return {
        "n": n,
        "wa": float(accuracy_score(gold, predicted)),
        "ua": float(np.mean(rec[present])),
        "wf1": float(np.sum(np.nan_to_num(f1) * support) / n),
        "per_class": per_class,
        "confusion": confusion.astype(int).tolist(),
    }


def point_metrics(gold: np.ndarray, predicted: np.ndarray, n_labels: int) -> dict:
    """{"n", "wa", "ua", "wf1"} of int64[n] label indices, fast (no per-class detail).

    Used where many small selections are scored (per-fold tables); same definitions as
    `classification_metrics`, computed from the confusion matrix.
    """
    n = int(gold.shape[0])
    if n == 0:
        return {"n": 0, "wa": None, "ua": None, "wf1": None}
    conf = np.bincount(gold * n_labels + predicted, minlength=n_labels * n_labels).reshape(n_labels, n_labels)
    return {"n": n, **{k: float(v) for k, v in metrics_from_confusions(conf).items()}}


def metrics_from_confusions(confusions: np.ndarray) -> dict[str, np.ndarray]:
    """WA, UA and WF1 of a stack of confusion matrices, vectorised.

    Args:
        confusions: float or int [..., E, E] (rows gold, columns predicted).
    Returns:
        {"wa", "ua", "wf1"}: float64[...] (NaN where a matrix is empty).

    Why hand-written: the bootstrap needs these for thousands of resampled confusion matrices at
    once; sklearn works on one label vector at a time. `classification_metrics` (sklearn) gives the
    point estimates, and the tests check both agree.
    """
    c = np.asarray(confusions, dtype=np.float64)
    tp = np.diagonal(c, axis1=-2, axis2=-1)
    support = c.sum(axis=-1)
    predicted = c.sum(axis=-2)
    total = support.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        wa = tp.sum(axis=-1) / total
        present = support > 0
        recall = np.where(present, tp / np.where(present, support, 1), 0.0)
        ua = recall.sum(axis=-1) / present.sum(axis=-1)
        denom = 2 * tp + (predicted - tp) + (support - tp)
        f1 = np.where(denom > 0, 2 * tp / np.where(denom > 0, denom, 1), 0.0)
        wf1 = (f1 * support).sum(axis=-1) / total
    return {"wa": wa, "ua": ua, "wf1": wf1}


def error_runs(rows) -> dict[str, dict]:
    """{method: {"runs": n, "mean": mean length, "longest": length}} of each method's runs of
    consecutive wrong predictions along a dialogue (its scored utterances in order). `rows`:
    Prediction rows (method, fold, dialogue, position, gold, predicted). A model that copies its own
    earlier mistakes makes long runs; one that reads each turn afresh makes runs as short as its
    errors are independent. Methods without an error: runs 0, mean and longest 0."""
    by: dict[tuple, list] = {}
    for p in rows:
        by.setdefault((p.method, p.fold, p.dialogue), []).append((p.position, p.predicted != p.gold))
    lengths: dict[str, list[int]] = {}
    for (method, _, _), marks in by.items():
        own = lengths.setdefault(method, [])
        run = 0
        for _, wrong in sorted(marks):
            if wrong:
                run += 1
            elif run:
                own.append(run)
                run = 0
        if run:
            own.append(run)
    return {m: {"runs": len(v), "mean": float(np.mean(v)) if v else 0.0, "longest": max(v, default=0)}
            for m, v in lengths.items()}
