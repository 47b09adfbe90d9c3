"""The contextual reference memory: each speaker's emotional inertia as a per-conversation filter.

What a simple model gets from context (DESIGN.md, "how a memory is judged"). A speaker keeps an
emotion for several turns, so the posterior of their previous turn is a prior for this one. Per
conversation row, the state holds each speaker's filtered emotion posterior alpha_s (E numbers).
For utterance i of speaker s:

    p_i   = softmax(inner read of utterance i)            # e.g. `none`: the utterance alone
    prior = alpha_s @ A          if s spoke before in this conversation, else pi
    alpha = normalise(p_i / pi * prior)                   # the HMM forward step
    read  = log(alpha);  alpha_s <- alpha

A is the speaker-turn transition matrix (row: this turn's emotion, column: the same speaker's next
turn's), and pi the label prior, both counted on the *training* dialogues' gold labels
(`transition_counts`; recorded in bundle.json "training"), with add-one smoothing. Dividing by pi
turns the model's posterior into a scaled likelihood (the hybrid HMM rule), so the prior is not
counted twice. A speaker's first turn reads exactly the inner posterior.

Why a wrapper: the filter is what context adds to *any* reader, so `inertia` is `none` through it,
and `dpm_inertia` / `mal_inertia` are those memories' posteriors through it (memory/registry.py).
No backprop, E*E multiply-adds per utterance, state O(speakers * E) per row. Gold labels never reach
it at inference: only the training dialogues' counts do, as the model's weights do.

With `eval.emotion_tokens: predicted` the token written back after each turn is the *filtered*
prediction (the engine writes back what the memory read), so `dpm_inertia`'s inner DPM reads and
writes the filter's tokens: the combination, not DPM alone through a filter afterwards.

Approximations, said once: A is counted on consecutive *labelled* turns of a speaker, while the
filter steps once per turn, unlabelled context turns included (on corpora with unscored turns a
step across one is a two-turn transition); and the speaker's running feature statistics DESIGN.md
mentions are not kept (the prosody marks already compare a turn with the speaker's earlier ones).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Hashable, Sequence

import numpy as np
import torch

from convmem.errors import ConvmemError
from convmem.memory.base import WindowBatch


def transition_counts(dialogues, labels: Sequence[str]) -> list[list[int]]:
    """int[E][E]: for every pair of consecutive turns of one speaker in one dialogue, both labelled,
    count[this turn's label][next turn's label]. `dialogues`: corpus Dialogues (gold labels: training
    data only)."""
    index = {lab: k for k, lab in enumerate(labels)}
    counts = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for d in dialogues:
        last: dict[Hashable, str | None] = {}
        for u in d.utterances:
            prev = last.get(u.speaker)
            if prev in index and u.emotion in index:
                counts[index[prev], index[u.emotion]] += 1
            last[u.speaker] = u.emotion
    return counts.tolist()


def transition_matrix(counts, label_counts: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """(A float64[E, E] row-stochastic, pi float64[E]) from `transition_counts` and the training
    label counts, each with add-one smoothing (an unseen transition keeps a small probability)."""
    c = np.asarray(counts, dtype=np.float64) + 1.0
    pi = np.asarray(label_counts, dtype=np.float64) + 1.0
    if c.ndim != 2 or c.shape[0] != c.shape[1] or pi.shape != (c.shape[0],):
        raise ConvmemError(f"inertia: transition counts {c.shape} do not match {pi.shape[0]} labels")
    return c / c.sum(1, keepdims=True), pi / pi.sum()


@dataclass
class InertiaState:
    """inner: the wrapped memory's state; speakers: per row, {speaker: alpha float64[E]}."""

    inner: Any
    speakers: list[dict]


class InertiaMemory:
    """Any memory's read filtered through each speaker's emotional inertia (module doc).

    Args:
        inner: the Memory whose emotion logits are filtered (its history, writes and cost are its own).
        transitions: A float[E, E] (row-stochastic); prior: pi float[E].
        name: the method name (e.g. "inertia", "dpm_inertia").
    """

    def __init__(self, inner, transitions, prior, name: str = "inertia"):
        self.inner = inner
        self.name = name
        self.transitions = torch.as_tensor(np.asarray(transitions), dtype=torch.float64)
        self.prior = torch.as_tensor(np.asarray(prior), dtype=torch.float64)
        self.history_tokens = inner.history_tokens
        if hasattr(inner, "max_window"):
            self.max_window = inner.max_window
        if hasattr(inner, "n_limit"):
            self.n_limit = inner.n_limit

    def __getattr__(self, attr):
        # recorders and cost hooks of the inner memory (DPM's write tally, MAL's probe, close)
        if attr in ("inner",):
            raise AttributeError(attr)
        return getattr(self.inner, attr)

    def __setattr__(self, attr, value):
        if attr in ("write_tally", "probe") and "inner" in self.__dict__ and hasattr(self.inner, attr):
            setattr(self.inner, attr, value)
        else:
            object.__setattr__(self, attr, value)

    def init(self, batch_size: int) -> InertiaState:
        return InertiaState(self.inner.init(batch_size), [{} for _ in range(batch_size)])

    def reset(self, state: InertiaState, rows: Sequence[int], keys: Sequence[str] | None = None) -> InertiaState:
        inner = self.inner.reset(state.inner, rows, keys)
        speakers = list(state.speakers)
        for r in rows:
            speakers[r] = {}
        return InertiaState(inner, speakers)

    def write(self, state: InertiaState, batch: WindowBatch) -> tuple[InertiaState, torch.Tensor]:
        inner, loss = self.inner.write(state.inner, batch)
        return InertiaState(inner, state.speakers), loss

    def read(self, state: InertiaState, batch: WindowBatch) -> torch.Tensor:
        """float32[B, E]: log of each active row's filtered posterior (NaN rows stay NaN).

        Reading updates the speaker's posterior in `state` (the engine reads each utterance once)."""
        logits = self.inner.read(state.inner, batch)
        probs = torch.softmax(logits.detach().double().cpu(), -1)
        out = torch.full(probs.shape, float("nan"), dtype=torch.float64)
        speakers = batch.speakers or (None,) * batch.batch_size
        for r in range(batch.batch_size):
            if not bool(batch.active[r]) or torch.isnan(probs[r]).any():
                continue
            seen = state.speakers[r]
            prev = seen.get(speakers[r])
            alpha = probs[r] if prev is None else _normalise(probs[r] / self.prior * (prev @ self.transitions))
            seen[speakers[r]] = alpha
            out[r] = alpha.clamp(min=1e-30).log()
        return out.float().to(logits.device)


def _normalise(x: torch.Tensor) -> torch.Tensor:
    total = x.sum()
    return x / total if total > 0 else torch.full_like(x, 1.0 / x.numel())
