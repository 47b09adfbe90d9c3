"""How much emotion a tokenizer's codes carry for unseen speakers, before any SLM is trained.

A linear probe, leave-one-session-out (every test speaker unseen): each scored turn becomes a bag
of codes (the share of each code, log length, the share of code changes), and a standardised
scikit-learn LogisticRegression reads it in two ways:

  alone    - the turn's own bag: what `none` can hope to read from these codes;
  relative - its bag and its difference from the mean bag of the same speaker's earlier turns in the
             dialogue (causal; speaker names only, never an earlier turn's emotion): what a model
             that compares a turn with the speaker's history, as `window` should, could read.

The probe is the codes' side of `convmem.corpus.context_check` (which reads prosodic statistics
instead): comparing tokenizers with it takes minutes, training the SLM on each takes an hour.
`benchmarks/probe_codes.py` runs it on a manifest.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from convmem.corpus.types import Dialogue
from convmem.errors import ConfigError

PROBE_C = 0.05  # inverse L2 strength: one weight per code, a few hundred turns per class
WAYS = ("alone", "relative")


def bag_of_codes(codes: np.ndarray, size: int) -> np.ndarray:
    """int64[frames] -> float64[size + 2]: code shares, log frame count, share of code changes."""
    codes = np.asarray(codes, dtype=np.int64)
    shares = np.bincount(codes, minlength=size)[:size] / codes.size
    changes = float(np.mean(codes[1:] != codes[:-1])) if codes.size > 1 else 0.0
    return np.concatenate([shares, [np.log(codes.size), changes]])


def frame_statistics(frames: np.ndarray) -> np.ndarray:
    """float[frames, dim] continuous encoder frames -> float64[2 * dim]: their mean and std."""
    frames = np.asarray(frames, dtype=np.float64)
    return np.concatenate([frames.mean(axis=0), frames.std(axis=0)])


def probe_rows(dialogues: Sequence[Dialogue], vectors: dict[str, np.ndarray],
               labels: Sequence[str]) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Features of every scored turn from one vector per utterance ({id: float[dim]}, e.g. a
    bag of codes). Returns ({way: float64[n, dim]}, label int64[n], session str[n])."""
    alone, relative, ys, sessions = [], [], [], []
    for dialogue in dialogues:
        earlier: dict[str, list[np.ndarray]] = {}
        for utt in dialogue.utterances:
            bag = vectors[utt.id]
            seen = earlier.setdefault(utt.speaker, [])
            habit = np.mean(seen, axis=0) if seen else bag
            seen.append(bag)  # after the mean: the turn itself is not its own reference
            if utt.emotion in labels:
                alone.append(bag)
                relative.append(np.concatenate([bag, bag - habit]))
                ys.append(labels.index(utt.emotion))
                sessions.append(dialogue.session)
    if not ys:
        raise ConfigError("code probe: no scored utterance with a label in " + ", ".join(labels))
    return ({"alone": np.asarray(alone), "relative": np.asarray(relative)}, np.asarray(ys),
            np.asarray(sessions))


def loso_probe(dialogues: Sequence[Dialogue], fold_codes: Callable[[list[str]], dict[str, np.ndarray]],
               size: int, labels: Sequence[str]) -> dict:
    """Leave-one-session-out probe of codes read as bags (`bag_of_codes`).

    Args:
        fold_codes: training sessions -> codes of every utterance of `dialogues` from a tokenizer
            fitted on those sessions only ({utterance id: int64[frames]}).
        size: codebook size; labels: the scored classes (prediction = index into them).
    Returns: {"folds": {session: {way: WA %}}, way: {"wa", "ua"} pooled %, "majority_wa", "n"}.
    """
    def fold_vectors(train_sessions: list[str]) -> dict[str, np.ndarray]:
        return {k: bag_of_codes(c, size) for k, c in fold_codes(train_sessions).items()}

    return loso_probe_vectors(dialogues, fold_vectors, labels)


def loso_probe_vectors(dialogues: Sequence[Dialogue], fold_vectors: Callable[[list[str]], dict[str, np.ndarray]],
                       labels: Sequence[str]) -> dict:
    """Leave-one-session-out probe of one vector per utterance (`loso_probe`'s returns).

    fold_vectors: training sessions -> {utterance id: float[dim]} from whatever was fitted on
    those sessions only (codes as bags, or `frame_statistics` of a frozen encoder's frames)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from convmem.eval.metrics import point_metrics

    def pct(x: float) -> float:
        return round(100 * x, 1)

    labels = list(labels)
    sessions = sorted({d.session for d in dialogues})
    if len(sessions) < 2:
        raise ConfigError(f"code probe: leave-one-session-out needs >= 2 sessions, got {sessions}")
    preds = {way: [] for way in WAYS}
    golds, folds = [], {}
    for test in sessions:
        train_sessions = [s for s in sessions if s != test]
        feats, y, sess = probe_rows(dialogues, fold_vectors(train_sessions), labels)
        train, held = sess != test, sess == test
        folds[test] = {}
        for way in WAYS:
            scaler = StandardScaler().fit(feats[way][train])
            model = LogisticRegression(C=PROBE_C, max_iter=3000).fit(scaler.transform(feats[way][train]), y[train])
            p = model.predict(scaler.transform(feats[way][held]))
            preds[way].append(p)
            folds[test][way] = pct(point_metrics(y[held], p, len(labels))["wa"])
        golds.append(y[held])
    gold = np.concatenate(golds)
    out = {"folds": folds, "n": int(gold.size), "majority_wa": pct(np.bincount(gold).max() / gold.size)}
    for way in WAYS:
        m = point_metrics(gold, np.concatenate(preds[way]), len(labels))
        out[way] = {"wa": pct(m["wa"]), "ua": pct(m["ua"])}
    return out
