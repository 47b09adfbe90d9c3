"""Speaker labels from GE2E embeddings: offline clustering of a whole recording, and online
assignment of each new utterance to a known or a new speaker (live sessions).

Offline: agglomerative clustering (scikit-learn), average linkage on cosine distance. With the
number of speakers given, the tree is cut into that many clusters; without, it is cut where the
average cosine similarity between two clusters falls below `SAME_SPEAKER` (0.70).

Why 0.70: GE2E embeddings of one eSpeak voice saying different sentences sit at cosine 0.73-0.9 of
each other, and of clearly different voices (a male and a female variant) at 0.55-0.65; 0.70 is
the round value between (docs/experiments/diarisation.md). It was set on eSpeak voices only and
never fitted to the RAVDESS actors the benchmark also scores. Voices closer than that (two eSpeak
female variants measured 0.73-0.81) are merged: give the number of speakers when it is known.
Average linkage compares whole clusters, so one odd utterance does not chain two voices together.

Online: each speaker is the running mean of their utterances' embeddings (constant memory); a new
utterance joins the most similar speaker when the similarity is >= `SAME_SPEAKER`, else starts a
new one (or, once `n_speakers` exist, joins the nearest). On well-separated voices this gives the
offline labels (tested); offline is the better estimate, since it sees the whole recording.

Labels are "spk1", "spk2", ... in order of first appearance, so they read the same however the
clustering numbers its clusters.
"""

from __future__ import annotations

import numpy as np

from convmem.errors import ConfigError

SAME_SPEAKER = 0.70  # cosine similarity above which two clusters / an utterance and a speaker are one voice
MAX_SPEAKERS = 20  # an estimate above this is almost surely noise; a given N may not exceed it either


def speaker_name(index: int) -> str:
    return f"spk{index + 1}"


def check_n_speakers(n: int | None) -> None:
    if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= MAX_SPEAKERS):
        raise ConfigError(f"number of speakers must be an integer from 1 to {MAX_SPEAKERS}, got {n!r}")


def _first_appearance(raw: np.ndarray) -> np.ndarray:
    order: dict[int, int] = {}
    return np.array([order.setdefault(int(c), len(order)) for c in raw], dtype=np.int64)


def cluster_embeddings(embeddings: np.ndarray, n_speakers: int | None = None,
                       threshold: float = SAME_SPEAKER) -> np.ndarray:
    """Speaker index per item, numbered in order of first appearance.

    Args:
        embeddings: float32[items, 256], unit length (encoder.embed_utterance), in time order.
        n_speakers: the number of speakers, or None to estimate it (module doc).
    Returns: int64[items] in [0, speakers).
    """
    check_n_speakers(n_speakers)
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"embeddings must be float[items, dim] with items >= 1, got shape {x.shape}")
    if x.shape[0] == 1 or n_speakers == 1:
        return np.zeros(x.shape[0], dtype=np.int64)
    if n_speakers is not None and n_speakers >= x.shape[0]:
        return np.arange(x.shape[0], dtype=np.int64)
    from sklearn.cluster import AgglomerativeClustering

    if n_speakers is not None:
        model = AgglomerativeClustering(n_clusters=n_speakers, metric="cosine", linkage="average")
    else:
        model = AgglomerativeClustering(n_clusters=None, distance_threshold=1.0 - threshold,
                                        metric="cosine", linkage="average")
    raw = model.fit_predict(x)
    labels = _first_appearance(raw)
    if n_speakers is None and labels.max() + 1 > MAX_SPEAKERS:
        model = AgglomerativeClustering(n_clusters=MAX_SPEAKERS, metric="cosine", linkage="average")
        labels = _first_appearance(model.fit_predict(x))
    return labels


class OnlineSpeakers:
    """Online speaker assignment for a stream: `assign(embedding) -> "spkK"` (module doc).

    State per speaker: the sum of their embeddings (float64[256]) and a count; nothing else.
    """

    def __init__(self, n_speakers: int | None = None, threshold: float = SAME_SPEAKER):
        check_n_speakers(n_speakers)
        self.n_speakers = n_speakers
        self.threshold = threshold
        self._sums: list[np.ndarray] = []

    @property
    def speakers(self) -> int:
        return len(self._sums)

    def assign(self, embedding: np.ndarray) -> str:
        """Label of the utterance whose embedding float32[256] is given; updates that speaker."""
        e = np.asarray(embedding, dtype=np.float64).ravel()
        if self._sums:
            centroids = np.stack([s / np.linalg.norm(s) for s in self._sums])
            sims = centroids @ (e / max(np.linalg.norm(e), 1e-12))
            best = int(sims.argmax())
            full = self.n_speakers is not None and len(self._sums) >= self.n_speakers
            if sims[best] >= self.threshold or full:
                self._sums[best] += e
                return speaker_name(best)
        self._sums.append(e.copy())
        return speaker_name(len(self._sums) - 1)
