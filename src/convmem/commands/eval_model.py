"""`convmem eval-model MODEL_DIR MANIFEST --out DIR`: score a trained model on any manifest.

Cross-corpus evaluation: the model directory (`convmem train`, or a run's final_model/) is scored on
every dialogue of the manifest, one held-out fold, with each memory it offers (default: all, plus
the majority class of its *training* data). Writes the same predictions.csv, results.json, cost.json,
report.md and plots as `convmem run`, naming the corpus and the model. The model's own tokenizer
reads the audio; gold labels are used only to score. A rerun with the same model, manifest and
settings resumes, and can add memories.
"""

from __future__ import annotations

import argparse


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("eval-model", help="score a trained model directory on any manifest (cross-corpus): "
                                          "predictions.csv, results.json, report.md",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="model directory (from `convmem train`, or a run's final_model/)")
    p.add_argument("manifest", help="manifest JSONL with gold emotions (e.g. from `convmem corpus` or `convmem synth`)")
    p.add_argument("--out", required=True,
                   help="output folder (new or empty; or an earlier eval-model folder to resume)")
    p.add_argument("--memory", action="append", metavar="METHOD",
                   help="memory to score; repeat for several (default: every one the model offers, and majority); "
                        "METHOD@vad runs it on silero-vad segments of each dialogue's audio, mapped to the gold turns")
    p.add_argument("--name", help="the corpus as the report names it (default: the manifest path)")
    p.add_argument("--caveat", default="", help="a sentence the report shows beside the scores")
    p.add_argument("--cache", metavar="DIR",
                   help="code cache (default: $CONVMEM_CACHE/codes or ~/.cache/convmem/codes, as `convmem tokenize`)")
    p.add_argument("--batch-size", type=int, help="dialogues per engine batch (default: the model's training config's)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples of dialogues (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    return p


def run(args) -> int:
    import sys

    from tqdm import tqdm

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from convmem.study.model_eval import evaluate_model
    from convmem.study.report import headline

    bar = None  # opened when the first memory starts: a bad input prints only its error

    def on_method(method: str) -> None:  # called as each memory starts: count the one before
        nonlocal bar
        if bar is None:
            bar = tqdm(desc="convmem eval-model", unit="memory", dynamic_ncols=True)
        else:
            bar.update(1)
        bar.set_description(f"eval {method}")

    from convmem.output_folder import claim_output_folder
    from convmem.study.model_eval import SETTINGS_FILE

    try:
        claim = claim_output_folder(args.out, "eval-model", legacy=lambda o: (o / SETTINGS_FILE).is_file())
        with claim:
            done = evaluate_model(args.model, args.manifest, args.out, methods=args.memory, name=args.name,
                                  caveat=args.caveat, cache_root=args.cache, batch_size=args.batch_size,
                                  bootstrap=args.bootstrap, seed=args.seed, on_method=on_method)
        if bar is not None:
            bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    for note in done.notes:
        print(f"note: {note}", file=sys.stderr)
    print(headline(done.out))
    print(f"report: {done.report}")
    return 0
