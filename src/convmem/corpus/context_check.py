"""Proof that the synthetic corpus makes context matter (the property the corpus exists for).

A simple classifier (standardised features + scikit-learn LogisticRegression), trained and tested
leave-one-session-out, so every test speaker is unseen, reads per-utterance prosodic statistics
(`convmem.audio.prosody`: F0 mean, F0 range, energy, speaking rate) in three ways:

  (a) raw    - the utterance's own statistics only;
  (b) oracle - its statistics minus the speaker's true habitual voice (the generator's rendered
               neutral reference, from OUT/generator_truth.json): an upper bound showing that
               emotions are rendered relative to the speaker;
  (c) causal - its statistics plus what the same dialogue said *before* it: its difference from
               the speaker's earlier turns (running mean and opening-turns mean: causal estimates
               of the habit) and, for inertia, the classifier's own posteriors of the speaker's
               and the partner's previous turns. Never gold labels of earlier turns, never the
               future.

Why not just subtract the speaker's recent turns: with strong inertia those share the current
emotion, so normalising by them subtracts the emotion itself. The opening and whole-history means
avoid that because the corpus, like real conversation, opens calmly and changes emotion several
times per speaker per dialogue (see `synth_presets`).

Stage-2 of (c) is trained on stage-1 posteriors that are themselves out-of-fold (inner
leave-one-session-out), so training sees posteriors as noisy as those at test time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convmem.audio.prosody import FEATURES
from convmem.corpus.types import EMOTIONS, Dialogue
from convmem.errors import ManifestError

GAP_BOUNDS = {"oracle_minus_raw": 10.0, "causal_minus_raw": 5.0}  # WA points, default preset
PRIOR_TURNS = 2.0  # shrinkage of the speaker means towards the training population mean
OPENING_TURNS = 3  # a speaker's first turns in a dialogue, which tend to be calm
# Intended direction of each emotion relative to the habit (+1 up, -1 down; 0 = not claimed).
INTENDED = {
    "hap": {"f0_mean_st": 1, "f0_range_st": 1, "energy_db": 0, "rate_syl_s": 0},
    "sad": {"f0_mean_st": -1, "f0_range_st": -1, "energy_db": -1, "rate_syl_s": -1},
    "ang": {"f0_mean_st": 0, "f0_range_st": 1, "energy_db": 1, "rate_syl_s": 1},
}


@dataclass
class TurnTable:
    """Every turn of a corpus in dialogue order. X: float64[n, len(FEATURES)]."""

    X: np.ndarray
    session: np.ndarray  # str[n]
    speaker: np.ndarray  # str[n]
    label: np.ndarray  # int64[n], index into EMOTIONS, -1 = unscored
    prev_same: list[list[int]]  # earlier turns of the same speaker in the same dialogue
    last_other: np.ndarray  # int64[n], latest earlier turn of another speaker, -1 if none


def _measure_dialogue(job: tuple[str, list[tuple[float, float]]]) -> np.ndarray:
    from convmem.audio.io import SAMPLE_RATE, load_audio
    from convmem.audio.prosody import utterance_prosody

    path, spans = job
    wave = load_audio(path)
    rows = []
    for a, b in spans:
        seg = wave[int(round(a * SAMPLE_RATE)): int(round(b * SAMPLE_RATE))]
        rows.append(utterance_prosody(seg, SAMPLE_RATE).as_array())
    return np.stack(rows)


def measure(dialogues: list[Dialogue], workers: int = 2, progress: bool = True) -> TurnTable:
    """Prosodic statistics of every turn (dialogue audio cut at the manifest's times)."""
    import multiprocessing as mp

    from tqdm import tqdm

    from convmem.fresh_processes import imap_fresh

    jobs = []
    for d in dialogues:
        if d.audio is None:
            raise ManifestError(f"dialogue {d.dialogue_id}: the context check needs dialogue audio")
        jobs.append((str(d.audio), [(u.start, u.end) for u in d.utterances]))
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["convmem.corpus.context_check", "convmem.audio.io", "convmem.audio.prosody",
                                "soundfile", "parselmouth"])
    parts = list(tqdm(imap_fresh(_measure_dialogue, jobs, workers=workers, context=ctx,
                                 describe=lambda i, job: f"prosody of {dialogues[i].dialogue_id} ({job[0]})"),
                      total=len(jobs), disable=not progress, desc="prosody", unit="dialogue"))
    X = np.concatenate(parts)
    # A turn with nothing voiced has no F0: use the corpus mean (label-free, so no leak).
    X = np.where(np.isfinite(X), X, np.nanmean(X, axis=0))
    session, speaker, label, prev_same, last_other = [], [], [], [], []
    offset = 0
    for d in dialogues:
        seen: dict[str, list[int]] = {}
        last_turn_of: dict[str, int] = {}
        for i, u in enumerate(d.utterances):
            n = offset + i
            session.append(d.session)
            speaker.append(u.speaker)
            label.append(EMOTIONS.index(u.emotion) if u.emotion in EMOTIONS else -1)
            prev_same.append(list(seen.get(u.speaker, [])))
            others = [t for s, t in last_turn_of.items() if s != u.speaker]
            last_other.append(max(others) if others else -1)
            seen.setdefault(u.speaker, []).append(n)
            last_turn_of[u.speaker] = n
        offset += len(d.utterances)
    return TurnTable(X, np.asarray(session), np.asarray(speaker), np.asarray(label, dtype=np.int64),
                     prev_same, np.asarray(last_other, dtype=np.int64))


def _classifier():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))


def _history_features(t: TurnTable, mu: np.ndarray) -> np.ndarray:
    """Causal speaker normalisation, float64[n, 3F+1]: [x, x - running mean of the speaker's earlier
    turns, x - mean of the speaker's opening turns, log(1 + #earlier turns)].

    Both means are shrunk towards the training population mean `mu` (PRIOR_TURNS pseudo-turns).
    The opening mean exists because conversations tend to open calmly, so a speaker's first turns
    show the habit; the running mean keeps improving as the speaker moves through emotions.
    """
    run = np.empty_like(t.X)
    opening = np.empty_like(t.X)
    count = np.zeros(len(t.X))
    for i, prev in enumerate(t.prev_same):
        first = prev[:OPENING_TURNS]
        run[i] = (t.X[prev].sum(axis=0) + PRIOR_TURNS * mu) / (len(prev) + PRIOR_TURNS)
        opening[i] = (t.X[first].sum(axis=0) + PRIOR_TURNS * mu) / (len(first) + PRIOR_TURNS)
        count[i] = len(prev)
    return np.column_stack([t.X, t.X - run, t.X - opening, np.log1p(count)])


def _posterior_features(t: TurnTable, P: np.ndarray) -> np.ndarray:
    """Own posteriors of earlier turns (inertia, contagion): the speaker's last turn and the
    partner's last turn, each with a 'present' flag. float64[n, 2K+2]."""
    k = P.shape[1]
    out = np.zeros((len(P), 2 * k + 2))
    for i, prev in enumerate(t.prev_same):
        if prev:
            out[i, :k] = P[prev[-1]]
            out[i, 2 * k] = 1.0
        if t.last_other[i] >= 0:
            out[i, k:2 * k] = P[t.last_other[i]]
            out[i, 2 * k + 1] = 1.0
    return out


def _fit_predict_proba(F: np.ndarray, y: np.ndarray, train: np.ndarray, apply: np.ndarray) -> np.ndarray:
    """Fit on scored turns of `train`, return posteriors float64[apply.sum(), 4] (all 4 classes)."""
    fit = train & (y >= 0)
    clf = _classifier().fit(F[fit], y[fit])
    P = np.zeros((int(apply.sum()), len(EMOTIONS)))
    P[:, clf.classes_] = clf.predict_proba(F[apply])
    return P


def _causal_fold(t: TurnTable, train: np.ndarray) -> np.ndarray:
    """Predictions (c) for every turn outside `train`, learning only from `train` sessions."""
    mu = t.X[train].mean(axis=0)
    H = _history_features(t, mu)
    P = np.zeros((len(t.X), len(EMOTIONS)))
    # Stage-1 posteriors: out-of-fold inside the training sessions, plain fit for the test turns.
    for s in np.unique(t.session[train]):
        inner_test = t.session == s
        inner_train = train & ~inner_test
        inner_mu = t.X[inner_train].mean(axis=0)
        H_inner = _history_features(t, inner_mu)
        P[inner_test] = _fit_predict_proba(H_inner, t.label, inner_train, inner_test)
    P[~train] = _fit_predict_proba(H, t.label, train, ~train)
    F = np.column_stack([H, _posterior_features(t, P)])
    return _fit_predict_proba(F, t.label, train, ~train).argmax(axis=1)


def evaluate(t: TurnTable, reference: np.ndarray) -> dict:
    """Leave-one-session-out WA/UA (percent) of the majority class, (a) raw, (b) oracle, (c) causal.

    reference: float64[n, F], the speaker's true habitual prosody for each turn (oracle only).
    """
    from sklearn.metrics import accuracy_score, balanced_accuracy_score

    y = t.label
    preds = {k: np.full(len(y), -1) for k in ("majority", "raw", "oracle", "causal")}
    sessions = np.unique(t.session)
    if len(sessions) < 2:
        raise ManifestError("the context check needs at least 2 sessions (leave-one-session-out)")
    for s in sessions:
        test = t.session == s
        train = ~test
        # the floor every reading must clear: the training sessions' most frequent class
        preds["majority"][test] = np.bincount(y[train & (y >= 0)], minlength=len(EMOTIONS)).argmax()
        preds["raw"][test] = _fit_predict_proba(t.X, y, train, test).argmax(axis=1)
        preds["oracle"][test] = _fit_predict_proba(t.X - reference, y, train, test).argmax(axis=1)
        preds["causal"][test] = _causal_fold(t, train)
    scored = y >= 0
    out: dict = {"n_scored": int(scored.sum()), "folds": [str(s) for s in sessions]}
    for k, p in preds.items():
        out[k] = {"wa": round(100 * accuracy_score(y[scored], p[scored]), 2),
                  "ua": round(100 * balanced_accuracy_score(y[scored], p[scored]), 2)}
    return out


def direction_table(t: TurnTable, reference: np.ndarray) -> dict:
    """Mean of (statistic - speaker's habit) per emotion, and whether each intended sign holds."""
    rel = t.X - reference
    table, ok = {}, True
    for e, name in enumerate(EMOTIONS):
        sel = t.label == e
        if not sel.any():
            continue
        table[name] = {f: round(float(rel[sel, j].mean()), 3) for j, f in enumerate(FEATURES)}
    neu = table.get("neu")
    checks = {}
    for emo, signs in INTENDED.items():
        if emo not in table or neu is None:
            continue
        for f, sign in signs.items():
            if sign:
                holds = bool(np.sign(table[emo][f] - neu[f]) == sign)
                checks[f"{emo}.{f} {'up' if sign > 0 else 'down'}"] = holds
                ok &= holds
    return {"mean_minus_habit": table, "checks_vs_neu": checks, "all_intended": ok}


def context_gap_report(manifest_path: str | Path, truth_path: str | Path | None = None,
                       workers: int = 2, progress: bool = True) -> dict:
    """Measure a synthetic corpus and return the gaps (b)-(a) and (c)-(a) with WA/UA and directions."""
    import json

    from convmem.corpus.manifest import read_manifest
    from convmem.corpus.synth import TRUTH_FILE, summarize

    manifest_path = Path(manifest_path)
    truth_path = Path(truth_path) if truth_path else manifest_path.parent / TRUTH_FILE
    if not truth_path.is_file():
        raise ManifestError(f"{truth_path}: generator truth not found (only synthetic corpora have one)")
    truth = json.loads(truth_path.read_text(encoding="utf-8"))
    dialogues = read_manifest(manifest_path)
    t = measure(dialogues, workers=workers, progress=progress)
    try:
        reference = np.stack([[truth["speakers"][s]["reference_prosody"][f] for f in FEATURES]
                              for s in t.speaker])
    except KeyError as exc:
        raise ManifestError(f"{truth_path}: no reference prosody for speaker/feature {exc}") from None
    scores = evaluate(t, reference)
    gaps = {"oracle_minus_raw": round(scores["oracle"]["wa"] - scores["raw"]["wa"], 2),
            "causal_minus_raw": round(scores["causal"]["wa"] - scores["raw"]["wa"], 2)}
    return {
        "corpus": summarize(dialogues),
        "preset": truth.get("preset"),
        "seed": truth.get("seed"),
        "classifier": "StandardScaler + LogisticRegression, leave-one-session-out",
        "features": list(FEATURES),
        **scores,
        "gaps_wa": gaps,
        "bounds_wa": GAP_BOUNDS,
        "meets_bounds": all(gaps[k] >= v for k, v in GAP_BOUNDS.items()),
        "directions": direction_table(t, reference),
    }


def format_report(report: dict) -> str:
    """Human-readable lines of `context_gap_report`'s result."""
    lines = [f"context check ({report['preset']}, seed {report['seed']}, {report['n_scored']} scored turns, "
             f"LOSO over {len(report['folds'])} sessions)"]
    for k, name in (("majority", "majority class"), ("raw", "(a) raw stats"), ("oracle", "(b) minus true habit"),
                    ("causal", "(c) causal context")):
        if k in report:  # reports written before the majority row have none
            lines.append(f"  {name:24s} WA {report[k]['wa']:6.2f}  UA {report[k]['ua']:6.2f}")
    g, b = report["gaps_wa"], report["bounds_wa"]
    lines.append(f"  gap (b)-(a) {g['oracle_minus_raw']:+.2f} WA points (bound >= {b['oracle_minus_raw']})")
    lines.append(f"  gap (c)-(a) {g['causal_minus_raw']:+.2f} WA points (bound >= {b['causal_minus_raw']})")
    d = report["directions"]
    units = {"f0_mean_st": ("F0", "st"), "f0_range_st": ("F0 range", "st"), "energy_db": ("energy", "dB"),
             "rate_syl_s": ("rate", "syl/s")}
    lines.append("  mean minus speaker habit (true reference):")
    for emo, row in d["mean_minus_habit"].items():
        lines.append(f"    {emo}: " + ", ".join(f"{units[k][0]} {v:+.2f} {units[k][1]}" for k, v in row.items()))
    lines.append(f"  intended directions hold: {d['all_intended']}")
    return "\n".join(lines)
