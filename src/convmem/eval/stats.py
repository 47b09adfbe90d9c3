"""Uncertainty: bootstrap confidence intervals that resample dialogues, and paired tests.

Utterances of one dialogue are not independent (same speakers, same recording, emotional inertia,
and a memory method carries its errors forward), so the resampling unit is the DIALOGUE: a
bootstrap replicate draws as many dialogues as there are, with replacement, and keeps all their
counted utterances. Each dialogue is reduced to its confusion matrix once; a replicate is then
a weighted sum of those matrices (weights = how often each dialogue was drawn), so 1000
replicates are one matrix product rather than 1000 passes over the utterances.

Paired test of method A against a reference R (default `window`) on the same utterances:
- paired bootstrap over dialogues of the difference A - R of WA / UA / WF1: percentile CI and a
  two-sided p-value from the bootstrap distribution shifted to the null,
  p = (1 + #{|d* - d| >= |d|}) / (B + 1);
- exact McNemar test on per-utterance correct/incorrect pairs (binomial test of the discordant
  pairs). It treats utterances as independent, so it is optimistic when errors cluster within
  dialogues; the bootstrap p is the one that respects the clustering. Both are reported.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest

from convmem.eval.metrics import HEADLINE_METRICS, metrics_from_confusions

# With one dialogue every replicate is that dialogue: an interval of zero width that says nothing.
MIN_CLUSTERS_FOR_CI = 2


@dataclass(frozen=True)
class BootstrapConfig:
    """n_resamples replicates, percentile interval at `level`, numpy Generator seeded with `seed`."""

    n_resamples: int = 1000
    seed: int = 0
    level: float = 0.95

    def __post_init__(self):
        if self.n_resamples < 1:
            raise ValueError(f"n_resamples must be >= 1, got {self.n_resamples}")
        if not 0.0 < self.level < 1.0:
            raise ValueError(f"level must be in (0, 1), got {self.level}")


def cluster_confusions(clusters: np.ndarray, gold: np.ndarray, predicted: np.ndarray,
                       n_labels: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-cluster confusion counts.

    Args:
        clusters: object[n] cluster ids (dialogue ids); gold, predicted: int64[n] label indices.
    Returns:
        keys: object[D] sorted unique cluster ids; counts: int64[D, E, E] (rows gold).
    """
    keys, inverse = np.unique(clusters.astype(str), return_inverse=True)
    flat = (inverse * n_labels + gold) * n_labels + predicted
    counts = np.bincount(flat, minlength=keys.size * n_labels * n_labels)
    return keys, counts.reshape(keys.size, n_labels, n_labels)


def resample_weights(n_clusters: int, config: BootstrapConfig) -> np.ndarray:
    """int64[B, D]: how often each of D clusters is drawn in each of B replicates (rows sum to D).

    Deterministic in (n_clusters, config), so it is cached; the array is read-only.
    """
    return _resample_weights(n_clusters, config)


@functools.lru_cache(maxsize=64)
def _resample_weights(n_clusters: int, config: BootstrapConfig) -> np.ndarray:
    rng = np.random.default_rng(config.seed)
    draws = rng.integers(0, n_clusters, size=(config.n_resamples, n_clusters))
    rows = np.arange(config.n_resamples)[:, None] * n_clusters
    weights = np.bincount((rows + draws).ravel(), minlength=config.n_resamples * n_clusters).reshape(
        config.n_resamples, n_clusters)
    weights.flags.writeable = False
    return weights


def percentile_interval(samples: np.ndarray, level: float) -> list[float] | None:
    """[lo, hi] percentile interval of float[B] samples (NaNs ignored); None if all are NaN."""
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return None
    tail = 100.0 * (1.0 - level) / 2.0
    lo, hi = np.percentile(samples, [tail, 100.0 - tail])
    return [float(lo), float(hi)]


def replicate_metrics(counts: np.ndarray, weights: np.ndarray) -> dict[str, np.ndarray]:
    """WA/UA/WF1 of each replicate: counts int[D, E, E], weights int[B, D] -> {metric: float[B]}."""
    d, e, _ = counts.shape
    resampled = (weights @ counts.reshape(d, e * e)).reshape(-1, e, e)
    return metrics_from_confusions(resampled)


def bootstrap_ci(clusters: np.ndarray, gold: np.ndarray, predicted: np.ndarray, n_labels: int,
                 config: BootstrapConfig = BootstrapConfig()) -> dict[str, list[float] | None] | None:
    """Percentile CIs of WA, UA and WF1 resampling clusters; None with fewer than 2 clusters.

    Args: as `cluster_confusions`. Returns {"wa": [lo, hi], "ua": [...], "wf1": [...]}.
    """
    keys, counts = cluster_confusions(clusters, gold, predicted, n_labels)
    if keys.size < MIN_CLUSTERS_FOR_CI:
        return None
    reps = replicate_metrics(counts, resample_weights(keys.size, config))
    return {m: percentile_interval(reps[m], config.level) for m in HEADLINE_METRICS}


def bootstrap_rate_ci(clusters: np.ndarray, hits: np.ndarray,
                      config: BootstrapConfig = BootstrapConfig()) -> list[float] | None:
    """Percentile CI of the mean of bool[n] `hits` resampling clusters (None if < 2 clusters)."""
    keys, inverse = np.unique(clusters.astype(str), return_inverse=True)
    if keys.size < MIN_CLUSTERS_FOR_CI:
        return None
    n = np.bincount(inverse, minlength=keys.size)
    k = np.bincount(inverse, weights=hits.astype(np.float64), minlength=keys.size)
    w = resample_weights(keys.size, config)
    return percentile_interval((w @ k) / (w @ n), config.level)


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> dict:
    """Exact McNemar test of bool[n] paired outcomes.

    Returns {"b": A right & B wrong, "c": A wrong & B right, "p": two-sided binomial p of b among
    b + c at 1/2 (1.0 when there are no discordant pairs)}.
    """
    b = int(np.sum(correct_a & ~correct_b))
    c = int(np.sum(~correct_a & correct_b))
    p = 1.0 if b + c == 0 else float(binomtest(b, b + c, 0.5, alternative="two-sided").pvalue)
    return {"b": b, "c": c, "p": p}


def paired_test(clusters: np.ndarray, gold: np.ndarray, pred_a: np.ndarray, pred_ref: np.ndarray,
                n_labels: int, config: BootstrapConfig = BootstrapConfig()) -> dict:
    """Compare method A with a reference on the same n utterances (rows already aligned).

    Args:
        clusters: object[n] dialogue ids; gold, pred_a, pred_ref: int64[n].
    Returns:
        {"n", "n_dialogues", "delta": {m: A - ref}, "ci": {m: [lo, hi]} | None,
         "p_bootstrap": {m: p} | None, "mcnemar": {"b", "c", "p"}} for m in wa/ua/wf1;
        deltas are None when n = 0; ci/p None with fewer than 2 dialogues.
    """
    n = int(gold.shape[0])
    out = {"n": n, "n_dialogues": int(np.unique(clusters.astype(str)).size) if n else 0,
           "delta": {m: None for m in HEADLINE_METRICS}, "ci": None, "p_bootstrap": None,
           "mcnemar": mcnemar_exact(pred_a == gold, pred_ref == gold)}
    if n == 0:
        return out
    keys, counts_a = cluster_confusions(clusters, gold, pred_a, n_labels)
    _, counts_r = cluster_confusions(clusters, gold, pred_ref, n_labels)
    point_a = metrics_from_confusions(counts_a.sum(axis=0))
    point_r = metrics_from_confusions(counts_r.sum(axis=0))
    delta = {m: float(point_a[m] - point_r[m]) for m in HEADLINE_METRICS}
    out["delta"] = delta
    if keys.size < MIN_CLUSTERS_FOR_CI:
        return out
    # The same replicate weights for both methods: that is what makes the bootstrap paired.
    weights = resample_weights(keys.size, config)
    reps_a = replicate_metrics(counts_a, weights)
    reps_r = replicate_metrics(counts_r, weights)
    out["ci"], out["p_bootstrap"] = {}, {}
    for m in HEADLINE_METRICS:
        d = reps_a[m] - reps_r[m]
        d = d[np.isfinite(d)]
        out["ci"][m] = percentile_interval(d, config.level)
        extreme = np.sum(np.abs(d - delta[m]) >= abs(delta[m]) - 1e-12)
        out["p_bootstrap"][m] = float((1 + extreme) / (d.size + 1))
    return out
