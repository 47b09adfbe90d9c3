"""The majority-class reference: what a run's methods have to beat to have learnt anything.

Every test utterance gets the class that is most frequent among the scored utterances of the
fold's *training* sessions (ties go to the earlier label), with the training class frequencies as
its probabilities; a model scored on another corpus (`convmem eval-model`) uses the counts its
training recorded in the model directory. It reads neither audio nor the test sessions' labels, so
it is a prediction like any other and is scored, bootstrapped and paired-tested by the same code. On imbalanced data it has
a high WA and a UA of 1 / n_classes; a method "beats the majority class" when the paired bootstrap
CI of its ΔWA against this row lies above zero (report.md's headline says so per method).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from convmem.corpus.types import Dialogue
from convmem.engine.history import history_counts, long_context
from convmem.errors import ConfigError
from convmem.eval.predictions import Prediction

METHOD = "majority"
LABEL = "Majority class of the training sessions"  # its name in reports


def label_counts(dialogues: Sequence[Dialogue], labels: Sequence[str]) -> dict[str, int]:
    """{label: scored utterances of `dialogues` with that label}, every label of `labels` listed.

    What `convmem train` records in a model directory (bundle.json "training"), so a model scored
    on another corpus (`convmem eval-model`) still has its training majority class."""
    counts = {lab: 0 for lab in labels}
    for d in dialogues:
        for u in d.utterances:
            if u.emotion in counts:
                counts[u.emotion] += 1
    return counts


def prior_of_counts(counts: Mapping[str, int], labels: Sequence[str],
                    where: str = "the training sessions") -> np.ndarray:
    """float64[len(labels)]: `counts` ({label: n}) as frequencies in label order."""
    freq = np.array([float(counts.get(lab, 0)) for lab in labels], dtype=np.float64)
    if freq.sum() <= 0:
        raise ConfigError(f"majority baseline: {where} have no scored utterance with a label in " + ", ".join(labels))
    return freq / freq.sum()


def training_prior(train: Sequence[Dialogue], labels: Sequence[str]) -> np.ndarray:
    """float64[len(labels)]: class frequencies among the scored utterances of `train`."""
    return prior_of_counts(label_counts(train, labels), labels)


def majority_rows(train: Sequence[Dialogue], test: Sequence[Dialogue], token_counts: dict[str, int],
                  labels: Sequence[str], fold: str, n_limit: int, emotion_token: bool) -> list[dict]:
    """Prediction rows (`Prediction.as_row`) of the majority class of `train` for every scored
    test utterance (`prior_rows` with `training_prior(train, labels)`)."""
    return prior_rows(training_prior(train, labels), test, token_counts, labels, fold, n_limit, emotion_token)


def prior_rows(prior: np.ndarray, test: Sequence[Dialogue], token_counts: dict[str, int],
               labels: Sequence[str], fold: str, n_limit: int, emotion_token: bool) -> list[dict]:
    """Prediction rows (`Prediction.as_row`) of the class `prior` (training class frequencies,
    label order) makes most likely, with `prior` as probabilities, for every scored test utterance.

    Args:
        token_counts: {utterance id: input tokens of that utterance}, so that history_tokens and
            the long-context flag are the ones every other method of the run reports (counted by
            the engine's own rule, engine/history.py).
        emotion_token: the run writes each utterance's predicted emotion token back into the
            history (emotion_tokens="predicted"), so it counts in the history too.
    """
    labels = list(labels)
    predicted = labels[int(np.argmax(prior))]
    probs = tuple(float(p) for p in prior)
    rows = []
    for d in test:
        scored = [i for i, u in enumerate(d.utterances) if u.emotion is not None]
        last = scored[-1] if scored else -1
        # unscored turns are heard too: the history runs over every utterance
        history = history_counts([token_counts[u.id] for u in d.utterances], emotion_token)
        for i in scored:
            u = d.utterances[i]
            seen = int(history[i])
            rows.append(Prediction(
                dialogue=d.dialogue_id, utterance=u.id, fold=fold, method=METHOD, position=i,
                gold=u.emotion, predicted=predicted, probs=probs, history_tokens=seen,
                long_context=long_context(seen, token_counts[u.id], n_limit), last_scored=i == last,
                write_loss=None, session=d.session, speaker=u.speaker).as_row())
    return rows
