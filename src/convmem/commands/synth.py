"""`convmem synth OUT [--preset tiny|default|wide|long] [--seed N] [--report]`: the synthetic corpus."""

from __future__ import annotations

import argparse

PRESET_NAMES = ("tiny", "default", "wide", "long")  # kept here so `convmem --help` needs no numpy


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "synth",
        help="make synthetic two-speaker conversations (eSpeak NG) where context matters",
        description="Write OUT/manifest.jsonl, OUT/audio/*.wav (16 kHz, one per dialogue) and "
        "OUT/generator_truth.json (generator-only facts for the oracle check; never for inference).",
    )
    p.add_argument("out", help="output folder (must be empty or absent unless --force)")
    p.add_argument("--preset", choices=PRESET_NAMES, default="default",
                   help="tiny: seconds, for tests; default: 5 sessions of 2-6 min dialogues; "
                        "wide: 15 sessions of 2 (30 speakers); long: 30-60 min dialogues for scale tests "
                        "(default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed; same seed, same bytes (default: 0)")
    p.add_argument("--meld", metavar="DIR", default=None,
                   help="take emotion sequences from real MELD dialogues (*_sent_emo.csv in DIR) "
                        "instead of the sticky Markov chains; non-4-class labels become unscored turns")
    p.add_argument("--workers", type=int, default=2, help="rendering processes (default: %(default)s)")
    p.add_argument("--force", action="store_true", help="replace what an earlier run wrote in OUT (refused if OUT holds other files)")
    p.add_argument("--report", action="store_true",
                   help="also run the context check (raw vs oracle vs causal classifier) and write "
                        "OUT/context_report.json")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from convmem.corpus.synth import MANIFEST_FILE, REPORT_FILE, format_summary, summarize, synthesize_corpus
    from convmem.errors import ConfigError

    if args.workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {args.workers}")
    dialogues = synthesize_corpus(args.out, preset=args.preset, seed=args.seed, force=args.force,
                                  workers=args.workers, meld_dir=args.meld, progress=not args.quiet)
    out = Path(args.out)
    print(f"wrote {out / MANIFEST_FILE}: {format_summary(summarize(dialogues))}")
    if args.report:
        from convmem.corpus.context_check import context_gap_report, format_report
        from convmem.fileio import atomic_write_json

        report = context_gap_report(out / MANIFEST_FILE, workers=args.workers, progress=not args.quiet)
        atomic_write_json(out / REPORT_FILE, report)
        print(format_report(report))
        print(f"wrote {out / REPORT_FILE}")
    return 0
