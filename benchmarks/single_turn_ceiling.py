"""How well can ONE turn be read on a corpus, whatever the model? (a diagnostic, not a speed goal)

The `none` baseline reads the current utterance only. On the synthetic corpus a speaker's habitual
voice varies more than an emotion moves it (by design: corpus/synth_presets.py),
so a single turn may carry little beyond the class prior for unseen speakers. This script measures
that ceiling from the turns' prosodic statistics (F0 mean/range, energy, speaking rate: the same
measurements as `convmem synth --report`), leave-one-session-out, with four scikit-learn classifiers
of different shapes, beside the majority class of the training sessions. If none of them clears the
majority class on a corpus, an SLM reading prosody from one turn cannot be expected to either.
The last column is what one turn's *words* could add on a synthetic corpus: a turn holding one of
the sentence bank's emotion sentences (corpus/sentences.py EMOTIONAL) gets that emotion, any other
turn the majority class; it needs a tokenizer whose codes identify words across voices.

    .venv/bin/python benchmarks/single_turn_ceiling.py /tmp/s0/manifest.jsonl /tmp/s1/manifest.jsonl

(`convmem synth /tmp/sN --seed N` makes each corpus in ~10 s; each manifest takes ~30 s here.)
Prints a table and writes benchmarks/results/single_turn_ceiling.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import markdown_table, run_script, write_results  # noqa: E402

from convmem.errors import ConvmemError  # noqa: E402


def classifiers() -> dict:
    """name -> factory of an unfitted classifier (standardised where the model needs it)."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import PolynomialFeatures, StandardScaler
    from sklearn.svm import SVC

    return {
        "logistic": lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000)),
        "logistic, quadratic features": lambda: make_pipeline(
            StandardScaler(), PolynomialFeatures(2), StandardScaler(), LogisticRegression(C=0.3, max_iter=3000)),
        "gradient boosting": lambda: HistGradientBoostingClassifier(max_depth=3, learning_rate=0.05, max_iter=200,
                                                                    random_state=0),
        "RBF SVM": lambda: make_pipeline(StandardScaler(), SVC(C=1.0)),
    }


def ceiling(manifest: Path, workers: int = 2) -> dict:
    """LOSO WA % of the majority class and of each classifier on one turn's prosody."""
    import numpy as np

    from convmem.corpus.context_check import measure
    from convmem.corpus.manifest import read_manifest
    from convmem.corpus.sentences import EMOTIONAL
    from convmem.corpus.types import EMOTIONS

    dialogues = read_manifest(manifest)
    t = measure(dialogues, workers=workers, progress=False)
    # the emotion the turn's words give away (-1: none), in TurnTable order (dialogue order)
    said = np.array([next((EMOTIONS.index(e) for e, lines in EMOTIONAL.items()
                           if any(line in (u.text or "") for line in lines)), -1)
                     for d in dialogues for u in d.utterances])
    y, sessions = t.label, t.session
    scored = y >= 0
    if len(np.unique(sessions[scored])) < 2:
        raise ConvmemError(f"{manifest}: leave-one-session-out needs >= 2 sessions with scored turns")
    out = {"manifest": str(manifest), "n": int(scored.sum()), "wa": {}}
    hits = {"majority class": 0, **{name: 0 for name in classifiers()}, "emotion sentences + majority": 0}
    for s in np.unique(sessions[scored]):
        train, test = scored & (sessions != s), scored & (sessions == s)
        majority = np.bincount(y[train]).argmax()
        hits["majority class"] += int((y[test] == majority).sum())
        hits["emotion sentences + majority"] += int((y[test] == np.where(said[test] >= 0, said[test], majority)).sum())
        for name, make in classifiers().items():
            hits[name] += int((make().fit(t.X[train], y[train]).predict(t.X[test]) == y[test]).sum())
    out["wa"] = {name: round(100 * h / out["n"], 1) for name, h in hits.items()}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("manifest", type=Path, nargs="+")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/single_turn_ceiling.json"))
    args = ap.parse_args(argv)
    results = []
    for m in args.manifest:
        results.append(ceiling(m, args.workers))
        print(f"{m}: {results[-1]['wa']}", flush=True)
    names = list(results[0]["wa"])
    print(markdown_table(["manifest", "turns", *(f"{n} WA" for n in names)],
                         [[r["manifest"], r["n"], *(r["wa"][n] for n in names)] for r in results]))
    write_results(args.out, "single_turn_ceiling", 0, {"results": results})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    run_script(main)
