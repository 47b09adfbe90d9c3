"""How well does a `ctc-kmeans` tokenizer's recogniser read each speaker? (a diagnostic, not a speed goal)

The codes of `ctc-kmeans` carry words only as far as its small CTC recogniser reads them. This script
reads each speaker's turns greedily (`transcribe`) and prints the character error rate per speaker
(Levenshtein distance / reference characters, both normalised like the CTC targets):

    .venv/bin/python benchmarks/recogniser_cer.py runs/R/folds/loso_S04/model/tokenizer corpus/manifest.jsonl \\
        --turns 40 --held-out S04

`--turns N` reads each speaker's first N turns with a transcript (0: all); `--held-out SESSION...`
marks the speakers of sessions the tokenizer was not fitted on. Writes
benchmarks/results/recogniser_cer.json.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

from common import markdown_table, run_script, write_results

from convmem.errors import ConfigError


def edit_distance(a: list[int], b: list[int]) -> int:
    """Levenshtein distance (insertions, deletions, substitutions all cost 1)."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        diag, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            diag, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diag + (x != y))
    return row[-1]


def speaker_cer(tokenizer, manifest: Path, turns: int) -> dict:
    """-> {speaker: {"session", "turns", "chars", "cer" (%)}} over each speaker's first `turns` turns."""
    from convmem.corpus.manifest import read_manifest
    from convmem.tokenizers.dialogue_audio import utterance_waveform
    from convmem.tokenizers.ctc_kmeans import characters

    errors: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    session = {}
    for d in read_manifest(manifest):
        for u in d.utterances:
            ref = characters(u.text or "")
            if not ref or (turns and errors[u.speaker][2] >= turns):
                continue
            hyp = characters(tokenizer.transcribe(utterance_waveform(u, d)))
            e = errors[u.speaker]
            e[0], e[1], e[2] = e[0] + edit_distance(hyp, ref), e[1] + len(ref), e[2] + 1
            session[u.speaker] = d.session
    if not errors:
        raise ConfigError(f"{manifest}: no turn has a transcript (`text`) to compare the recogniser with")
    return {s: {"session": session[s], "turns": n, "chars": c, "cer": round(100 * e / c, 1)}
            for s, (e, c, n) in sorted(errors.items())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("tokenizer", type=Path, help="a saved ctc-kmeans tokenizer directory")
    ap.add_argument("manifest", type=Path, help="a manifest whose turns have `text`")
    ap.add_argument("--turns", type=int, default=40, help="turns read per speaker (0: all)")
    ap.add_argument("--held-out", nargs="*", default=[], help="sessions the tokenizer was not fitted on")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/recogniser_cer.json"))
    args = ap.parse_args(argv)
    from convmem.tokenizers.base import load_tokenizer

    tok = load_tokenizer(args.tokenizer)
    if not hasattr(tok, "transcribe"):
        raise ConfigError(f"{args.tokenizer}: a {tok.kind!r} tokenizer has no recogniser to read with")
    res = speaker_cer(tok, args.manifest, args.turns)
    held = set(args.held_out)
    print(f"{args.tokenizer}: recogniser at {tok.config.ctc_hz} Hz")
    print(markdown_table(["speaker", "turns", "characters", "CER %", ""],
                         [[s, r["turns"], r["chars"], r["cer"], "held out" if r["session"] in held else ""]
                          for s, r in res.items()]))
    write_results(args.out, "recogniser_cer", 0, {"tokenizer": str(args.tokenizer), "ctc_hz": tok.config.ctc_hz,
                                                  "held_out": sorted(held), "speakers": res})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    run_script(main)
