"""Which rule counts the speakers: the candidate rules of the count estimate, scored on manifests.

    python benchmarks/diarisation_candidates.py --manifest data/ravdess/manifest.jsonl \
        --manifest /tmp/nemo/manifest.jsonl --fit ravdess --fit nemo

Each dialogue's VAD utterances and GE2E windows are embedded once (speakers/diarise.py
`speech_units`); every rule then labels the same embeddings, and the labels are scored as
bench_diarisation.py scores them (pyannote.metrics, collar 0.25 s, overlap skipped): the share of
dialogues whose count is exact and the confusion share of gold speech. Rules:

- `cut t`: one cut of the average-linkage tree at cosine similarity t (the old rule: t = 0.70);
- `cut 0.70 + merge f`: that cut, then clusters under f of the speech time merged into their nearest;
- `silhouette`: the candidate count 2..8 with the best silhouette, nothing merged;
- `estimate (share f)`: speakers/cluster.py `estimate_labels` (one voice, or silhouette over
  candidate counts after merging clusters under f of the speech time or under MIN_SPEAKER_S).

`--fit NAME` marks manifests (by folder name) the rule was chosen on; the others are checks.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_diarisation import _annotation, _metrics  # noqa: E402


def embedded(manifest: Path) -> list[dict]:
    """Per dialogue: its VAD utterances, units, embeddings, unit seconds, gold turns and length."""
    from convmem.audio.io import audio_info
    from convmem.corpus.manifest import read_manifest
    from convmem.speakers.diarise import speech_units

    out = []
    for d in read_manifest(manifest):
        if not d.audio:
            continue
        audio = Path(d.audio) if Path(d.audio).is_absolute() else manifest.parent / d.audio
        utterances, units, emb = speech_units(audio)
        out.append({"id": d.dialogue_id, "duration": audio_info(audio).duration, "utterances": utterances,
                    "units": units, "emb": emb.astype(np.float64),
                    "seconds": np.array([u.end - u.start for u in units]),
                    "gold": [(u.start, u.end, u.speaker) for u in d.utterances]})
    return out


def rules() -> dict:
    """{name: labels(x float[units, 256], seconds float[units]) -> int[units]}."""
    from sklearn.metrics import silhouette_score

    from convmem.speakers import cluster as C

    def cut(t):
        def f(x, s):
            if len(x) < 2:
                return np.zeros(len(x), int)
            tree = C._tree(x)
            from scipy.cluster.hierarchy import fcluster

            return fcluster(tree, t=1 - t, criterion="distance")
        return f

    def cut_merge(share):
        return lambda x, s: C.merge_small(x, s, cut(0.70)(x, s), share, 0.0)

    def silhouette(x, s):
        if len(x) < 3:
            return np.zeros(len(x), int)
        tree = C._tree(x)
        scored = [(silhouette_score(x, C._cut(tree, k), metric="cosine"), C._cut(tree, k))
                  for k in range(2, min(C.MAX_CANDIDATES, len(x) - 1) + 1)]
        return max(scored, key=lambda p: p[0])[1]

    def estimate(share):
        return lambda x, s: C.estimate_labels(x, s, min_share=share)

    table = {f"cut {t:.2f}": cut(t) for t in (0.70, 0.65, 0.60, 0.55, 0.50)}
    table.update({f"cut 0.70 + merge {f:g}": cut_merge(f) for f in (0.1, 0.2)})
    table["silhouette"] = silhouette
    table.update({f"estimate (share {f:g})": estimate(f) for f in (0.0, 0.1, 0.2)})
    return table


def score(dialogues: list[dict], rule) -> tuple[float, float]:
    """(exact count %, confusion % of gold speech) of `rule` over `dialogues`."""
    from pyannote.core import Segment, Timeline

    from convmem.speakers.diarise import assemble

    der, _ = _metrics()
    exact = 0
    for d in dialogues:
        labels = rule(d["emb"], d["seconds"])
        hyp = assemble(d["utterances"], d["units"], labels, True, lambda k: f"spk{k}")
        exact += len({s.speaker for s in hyp}) == len({g[2] for g in d["gold"]})
        der(_annotation(d["gold"], d["id"]), _annotation([(s.start, s.end, s.speaker) for s in hyp], d["id"]),
            uem=Timeline([Segment(0.0, d["duration"])], uri=d["id"]))
    parts = der[:]
    return 100 * exact / len(dialogues), 100 * parts["confusion"] / parts["total"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", action="append", required=True, type=Path)
    ap.add_argument("--fit", action="append", default=[], help="folder name of a manifest the rule was chosen on")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    corpora = {m.parent.name: embedded(m) for m in args.manifest}
    names = [f"{n} ({'fit' if n in args.fit else 'check'}, {len(d)})" for n, d in corpora.items()]
    print("| rule | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for name, rule in rules().items():
        cells = [score(d, rule) for d in corpora.values()]
        print(f"| {name} | " + " | ".join(f"{e:.1f} / {c:.1f}" for e, c in cells) + " |", flush=True)
    print("cells: exact count % of dialogues / confusion % of gold speech (collar 0.25 s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
