"""Speaker labels from GE2E embeddings: offline clustering of a whole recording (online assignment,
for live sessions, is online.py and reuses this rule).

With the number of speakers given, an average-linkage tree (cosine distance) is cut into that many
clusters. Without it, the count is estimated by a rule that survives short turns
(docs/experiments/diarisation.md):

1. One speaker when the whole tree joins at an average cosine similarity >= `SAME_SPEAKER` (0.70):
   every piece of the recording sounds like every other.
2. Else, for each candidate count k = 2 .. `MAX_CANDIDATES`, the tree is cut into k clusters and
   every cluster holding less than `MIN_SHARE` (10%) of the speech time, or less than
   `MIN_SPEAKER_S` (3 s) of speech, is merged into the cluster whose (duration-weighted) centroid
   is most similar, smallest first. A 1-3 s turn of an acted
   voice shouting or whispering scatters far from that voice's other turns, and a plain threshold
   (the old rule, cut at 0.70) made each such turn a speaker of its own: 3-10 speakers for two.
3. The candidate partition with the highest silhouette (cosine; scikit-learn) wins; ties go to
   fewer speakers.

Why these values: MIN_SHARE and MAX_CANDIDATES were chosen on RAVDESS and nEMO pseudo-conversations
and then checked, unchanged, on TurEV-DB and the synthetic default (the study). MIN_SPEAKER_S keeps
one short turn from founding a speaker; it matters most online, where the first turns come alone. A speaker with less
than 10% of the speech is folded into the nearest other voice; give `--speakers N` when one
party barely speaks, or when there are more than `MAX_CANDIDATES`. SAME_SPEAKER only decides "one
speaker": GE2E of one eSpeak voice sits at 0.73-0.9; a single real acted voice often lands below it
and is then counted as two (measured in the study).

Labels are "spk1", "spk2", ... in order of first appearance, so they read the same however the
clustering numbers its clusters.
"""

from __future__ import annotations

import numpy as np

from convmem.errors import ConfigError

SAME_SPEAKER = 0.70  # average cosine similarity at or above which the whole recording is one voice
MIN_SHARE = 0.10  # a cluster with less of the speech time than this is merged into its nearest
MIN_SPEAKER_S = 3.0  # ... and so is a cluster with less speech than this (seconds)
MAX_CANDIDATES = 8  # estimated counts tried: 2 .. this
MAX_SPEAKERS = 20  # a given N may not exceed this


def speaker_name(index: int) -> str:
    return f"spk{index + 1}"


def check_n_speakers(n: int | None) -> None:
    if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= MAX_SPEAKERS):
        raise ConfigError(f"number of speakers must be an integer from 1 to {MAX_SPEAKERS}, got {n!r}")


def first_appearance(raw: np.ndarray) -> np.ndarray:
    """Cluster ids renumbered 0, 1, ... in order of first appearance: int64[items]."""
    order: dict[int, int] = {}
    return np.array([order.setdefault(int(c), len(order)) for c in raw], dtype=np.int64)


def merge_small(x: np.ndarray, weights: np.ndarray, labels: np.ndarray, min_share: float = MIN_SHARE,
                min_weight: float = MIN_SPEAKER_S) -> np.ndarray:
    """Merge clusters with under `min_share` of the total weight, or under `min_weight`, into their
    most similar cluster (cosine of weight-summed centroids), smallest first, until none is left or
    one cluster remains.

    x: float[items, dim] unit rows; weights: float[items] (seconds); labels: int[items]. Returns int64[items]."""
    labels = np.asarray(labels).copy()
    total = float(weights.sum())
    while True:
        ks = np.unique(labels)
        if ks.size < 2:
            return labels
        size = np.array([weights[labels == k].sum() for k in ks])
        if size.min() >= max(min_share * total, min_weight):
            return labels
        small = ks[int(size.argmin())]
        cent = {int(k): (x[labels == k] * weights[labels == k, None]).sum(0) for k in ks}
        unit = {k: c / max(float(np.linalg.norm(c)), 1e-12) for k, c in cent.items()}
        target = max((k for k in unit if k != small), key=lambda k: float(unit[small] @ unit[k]))
        labels[labels == small] = target


def _tree(x: np.ndarray) -> np.ndarray:
    """Average-linkage tree of cosine distances (scipy linkage matrix float[items - 1, 4])."""
    from scipy.cluster.hierarchy import linkage

    return linkage(x, method="average", metric="cosine")


def _cut(tree: np.ndarray, k: int) -> np.ndarray:
    from scipy.cluster.hierarchy import fcluster

    return fcluster(tree, t=k, criterion="maxclust")


def estimate_labels(x: np.ndarray, weights: np.ndarray, threshold: float = SAME_SPEAKER,
                    min_weight: float = MIN_SPEAKER_S, min_share: float = MIN_SHARE) -> np.ndarray:
    """The estimated partition (module doc, steps 1-3): int64[items], first-appearance order;
    `min_weight`, `min_share`: the least speech of a speaker, in seconds and as a share of all."""
    from sklearn.metrics import silhouette_score

    n = x.shape[0]
    if n < 3:  # too few pieces for a silhouette: one cut at the threshold
        if n < 2 or float(x[0] @ x[1]) >= threshold:
            return np.zeros(n, np.int64)
        return first_appearance(merge_small(x, weights, np.arange(n), min_share, min_weight))
    tree = _tree(x)
    if tree[-1, 2] <= 1.0 - threshold:
        return np.zeros(n, np.int64)
    best, chosen = -np.inf, np.zeros(n, np.int64)
    for k in range(2, min(MAX_CANDIDATES, n - 1) + 1):
        labels = merge_small(x, weights, _cut(tree, k), min_share, min_weight)
        if np.unique(labels).size < 2:
            continue
        score = float(silhouette_score(x, labels, metric="cosine"))
        if score > best + 1e-9:
            best, chosen = score, labels
    return first_appearance(chosen)


def cluster_embeddings(embeddings: np.ndarray, n_speakers: int | None = None,
                       threshold: float = SAME_SPEAKER, durations: np.ndarray | None = None) -> np.ndarray:
    """Speaker index per item, numbered in order of first appearance.

    Args:
        embeddings: float32[items, 256], unit length (encoder.embed_utterance), in time order.
        n_speakers: the number of speakers, or None to estimate it (module doc).
        durations: float[items] seconds of each item (weights of MIN_SHARE); None: all equal.
    Returns: int64[items] in [0, speakers).
    """
    check_n_speakers(n_speakers)
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"embeddings must be float[items, dim] with items >= 1, got shape {x.shape}")
    weights = np.ones(x.shape[0]) if durations is None else np.asarray(durations, dtype=np.float64)
    if weights.shape != (x.shape[0],):
        raise ValueError(f"durations must be float[{x.shape[0]}], got shape {weights.shape}")
    if x.shape[0] == 1 or n_speakers == 1:
        return np.zeros(x.shape[0], dtype=np.int64)
    if n_speakers is None:
        return estimate_labels(x, weights, threshold)
    if n_speakers >= x.shape[0]:
        return np.arange(x.shape[0], dtype=np.int64)
    from sklearn.cluster import AgglomerativeClustering

    model = AgglomerativeClustering(n_clusters=n_speakers, metric="cosine", linkage="average")
    return first_appearance(model.fit_predict(x))
