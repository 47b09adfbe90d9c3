"""`convmem demo`: the embedded default end to end (what `make demo` runs).

Default synthetic corpus → reduced leave-one-session-out (see configs/synth_default.yaml) → every
method → report.md, plus a final model trained on all sessions, ready for `predict` and `serve`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_CONFIG = Path(__file__).resolve().parents[3] / "configs" / "synth_default.yaml"


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("demo", help="run the embedded default end to end (synthetic corpus, reduced LOSO, all methods, report)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides of the demo config")
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="config file (default: %(default)s)")
    p.add_argument("--out", help="output folder (default: runs/synth_default)")
    return p


def run(args) -> int:
    import time

    from convmem.commands.run import execute
    from convmem.config import load_config
    from convmem.run_config import RunConfig

    t0 = time.perf_counter()
    cfg = load_config(RunConfig, args.config, args.overrides)
    print(f"convmem demo: {cfg.corpus.title()}, folds {cfg.folds.test_sessions or 'all'}, "
          f"methods {', '.join(cfg.eval.methods)}")
    out = execute(cfg, args.out)
    for corpus in [Path(m).parent for m in cfg.corpus.manifests()] or [out / "corpus"]:
        _print_corpus(corpus)
    print(f"demo finished in {(time.perf_counter() - t0) / 60:.1f} min; report: {out / 'report.md'}")
    if cfg.final:
        print(f"model ready: {out / 'final_model'}  (try: convmem predict {out / 'final_model'} some.wav)")
    return 0


def _print_corpus(corpus: Path) -> None:
    """Corpus summary and the context-gap figures that show context matters in it."""
    from convmem.corpus.context_check import context_gap_report, format_report
    from convmem.corpus.manifest import read_manifest
    from convmem.corpus.synth import format_summary, summarize

    manifest = corpus / "manifest.jsonl"
    print(format_summary(summarize(read_manifest(manifest))))
    if (corpus / "generator_truth.json").exists():
        print(format_report(context_gap_report(manifest)))
