"""Online speaker assignment for live sessions: each new utterance gets a speaker label at once.

With `n_speakers` given, each speaker is the running sum of their utterances' embeddings; a new
utterance joins the most similar speaker when the cosine similarity is >= `SAME_SPEAKER`, else
starts a new one until `n_speakers` exist, then joins the nearest.

Estimated (`auto`), the offline rule (cluster.py `estimate_labels`: one voice, or the candidate
count whose small-cluster-merged partition has the best silhouette) is rerun on the utterances
seen so far (at most the last `HISTORY`), every time one arrives: a cut at one fixed similarity
(the old online rule) split a real voice's short turns into many speakers. The new partition's
clusters are matched to the names already given (the assignment that keeps the most speech time
under the same name, scipy's linear_sum_assignment); a cluster no name matches is a new speaker,
and the new utterance takes its cluster's name. Names already given never change: online is the
offline rule on the prefix, so it can disagree with offline on the early turns (measured in the
study). Memory: at most HISTORY embeddings of 256 floats; cost per utterance: one clustering of
at most HISTORY items (benchmarks/README.md: 0.7-1.1 CPU s per audio minute online, embedding
included, against 0.6-0.9 offline; with a full history, 0.045 CPU s per utterance, measured under
load).
"""

from __future__ import annotations

import numpy as np

from convmem.speakers.cluster import MIN_SPEAKER_S, SAME_SPEAKER, check_n_speakers, estimate_labels, speaker_name

HISTORY = 400  # utterances kept for re-clustering (~15-30 min of conversation); a speaker silent longer is new


class OnlineSpeakers:
    """`assign(embedding, seconds) -> "spkK"`, one utterance at a time (module doc)."""

    def __init__(self, n_speakers: int | None = None, threshold: float = SAME_SPEAKER, history: int = HISTORY,
                 min_speaker_s: float = MIN_SPEAKER_S):
        check_n_speakers(n_speakers)
        self.n_speakers = n_speakers
        self.threshold = threshold
        self.history = history
        self.min_speaker_s = min_speaker_s
        self._sums: list[np.ndarray] = []  # given N: one running sum per speaker
        self._emb: list[np.ndarray] = []  # auto: the recent utterances' embeddings, seconds, name index
        self._sec: list[float] = []
        self._name: list[int] = []
        self._named = 0

    @property
    def speakers(self) -> int:
        """How many speakers have been named so far."""
        return len(self._sums) if self.n_speakers is not None else self._named

    def assign(self, embedding: np.ndarray, seconds: float = 1.0) -> str:
        """Label of the utterance whose embedding float32[256] (and length in seconds) is given."""
        e = np.asarray(embedding, dtype=np.float64).ravel()
        e = e / max(float(np.linalg.norm(e)), 1e-12)
        if self.n_speakers is not None:
            return speaker_name(self._given(e))
        self._emb.append(e)
        self._sec.append(max(float(seconds), 1e-3))
        self._name.append(-1)
        if len(self._emb) > self.history:
            del self._emb[0], self._sec[0], self._name[0]
        labels = estimate_labels(np.stack(self._emb), np.asarray(self._sec), self.threshold, self.min_speaker_s)
        self._name[-1] = self._match(labels)
        return speaker_name(self._name[-1])

    def _match(self, labels: np.ndarray) -> int:
        """Name index of the newest item: its cluster's name under the overlap-maximising match."""
        from scipy.optimize import linear_sum_assignment

        clusters = int(labels.max()) + 1
        overlap = np.zeros((clusters, max(self._named, 1)))
        for k, name, s in zip(labels[:-1], self._name[:-1], self._sec[:-1]):
            overlap[k, name] += s
        rows, cols = linear_sum_assignment(-overlap)
        # a cluster may take a name none of its utterances carries (the name's utterances all went
        # elsewhere): a name given too early is reused before a new one is made
        mapping = {int(r): int(c) for r, c in zip(rows, cols) if c < self._named}
        mine = int(labels[-1])
        if mine not in mapping:
            mapping[mine] = self._named
            self._named += 1
        return mapping[mine]

    def _given(self, e: np.ndarray) -> int:
        if self._sums:
            centroids = np.stack([s / np.linalg.norm(s) for s in self._sums])
            sims = centroids @ e
            best = int(sims.argmax())
            if sims[best] >= self.threshold or len(self._sums) >= self.n_speakers:
                self._sums[best] += e
                return best
        self._sums.append(e.copy())
        return len(self._sums) - 1
