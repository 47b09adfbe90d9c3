"""Code probe: how much emotion each tokenizer's codes carry for unseen speakers (a diagnostic, not
a speed goal; see convmem/eval/code_probe.py). Leave-one-session-out: per fold the tokenizer is
fitted on the training sessions only, then a linear probe reads bags of codes alone and relative to
the speaker's earlier turns.

    .venv/bin/python benchmarks/probe_codes.py MANIFEST --tokenizer 'kmeans:{"codebook_size": 256, "utterance_cmn": true}' \
        --tokenizer 'kmeans:{"codebook_size": 256, "utterance_cmn": true, "prosody_weight": 1.0}' \
        --tokenizer 'whisper-kmeans:{"model": "base", "layer": 3}' --features 'whisper:{"model": "base", "layer": 3}'

`--features` reads a frozen encoder's continuous frames as mean + std per turn (what a projector
front-end could read) on the same folds: nothing is fitted, so every fold uses the same vectors.

A synthetic manifest is made with `convmem synth OUT` (the default corpus: ~11 s). Each tokenizer
takes ~1-4 min on 2 cores (fitting 5 times, Praat F0 for prosody). Prints a table and writes
benchmarks/results/probe_codes.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import markdown_table, run_script, write_results  # noqa: E402

from convmem.corpus.manifest import read_manifest  # noqa: E402
from convmem.corpus.types import EMOTIONS  # noqa: E402
from convmem.errors import ConfigError  # noqa: E402
from convmem.eval.code_probe import WAYS, frame_statistics, loso_probe, loso_probe_vectors  # noqa: E402
from convmem.tokenizers import CodeCache, build_tokenizer, encode_dialogues, fit_on_dialogues  # noqa: E402


def parse_spec(spec: str) -> tuple[str, dict]:
    kind, _, options = spec.partition(":")
    try:
        return kind, (json.loads(options) if options else {})
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--tokenizer {spec!r}: options are not JSON ({exc.msg})") from None


def whisper_statistics(dialogues, options: dict, cache) -> dict:
    """{utterance id: mean+std of a packaged Whisper layer's 25 Hz frames} (the cache's feature store
    when --cache is given)."""
    from tqdm import tqdm

    from convmem.tokenizers import utterance_waveform
    from convmem.tokenizers.whisper_kmeans import WhisperKMeansTokenizer, WhisperKMeansConfig

    reader = WhisperKMeansTokenizer(WhisperKMeansConfig(**options))
    if cache is not None:
        cache.attach(reader)
    items = [(d, u) for d in dialogues for u in d.utterances]
    vectors = {}
    for a in tqdm(range(0, len(items), 32), desc="whisper frames", unit="batch"):
        chunk = items[a:a + 32]
        frames = reader.features_batch([utterance_waveform(u, d) for d, u in chunk])
        vectors.update({u.id: frame_statistics(f) for (_, u), f in zip(chunk, frames)})
    return vectors


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("manifest", type=Path)
    ap.add_argument("--tokenizer", action="append", default=[], metavar="KIND[:JSON]",
                    help="a tokenizer kind and its options, e.g. 'kmeans:{\"codebook_size\": 256}' (repeatable)")
    ap.add_argument("--features", action="append", default=[], metavar="whisper[:JSON]",
                    help="continuous frames of a frozen encoder read as mean+std per turn, e.g. "
                         "'whisper:{\"model\": \"base\", \"layer\": 3}' (repeatable)")
    ap.add_argument("--cache", type=Path, default=None, help="code cache (default: none, codes kept in memory)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/probe_codes.json"))
    args = ap.parse_args(argv)
    if not args.tokenizer and not args.features:
        ap.error("give at least one --tokenizer or --features")
    dialogues = read_manifest(args.manifest)
    cache = CodeCache(args.cache) if args.cache else None
    results = []
    for spec in args.features:
        kind, options = parse_spec(spec)
        if kind != "whisper":
            raise ConfigError(f"--features {spec!r}: only 'whisper' frames are offered")
        vectors = whisper_statistics(dialogues, options, cache)
        out = loso_probe_vectors(dialogues, lambda train: vectors, list(EMOTIONS))  # frozen: nothing to fit
        results.append({"features": kind, "options": options, **out})
        print(f"{spec}: {json.dumps({w: out[w] for w in WAYS})}", flush=True)
    for spec in args.tokenizer:
        kind, options = parse_spec(spec)
        size = build_tokenizer(kind, **options).codebook_size

        def fold_codes(train, kind=kind, options=options):
            tok = fit_on_dialogues(build_tokenizer(kind, **options), dialogues, train, progress=False, cache=cache)
            return encode_dialogues(tok, dialogues, cache, progress=False)

        out = loso_probe(dialogues, fold_codes, size, list(EMOTIONS))
        results.append({"tokenizer": kind, "options": options, **out})
        print(f"{spec}: {json.dumps({w: out[w] for w in WAYS})}", flush=True)
    rows = [[f"{r.get('tokenizer') or r['features'] + ' frames'} {json.dumps(r['options'])}", r["n"], r["majority_wa"],
             *(f"{r[w]['wa']} / {r[w]['ua']}" for w in WAYS)] for r in results]
    print(markdown_table(["tokenizer", "turns", "majority WA", "alone WA / UA", "relative WA / UA"], rows))
    write_results(args.out, "probe_codes", 0, {"manifest": str(args.manifest), "results": results})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    run_script(main)
