"""`convmem eval CONFIG --memory dpm [--memory none ...]`: evaluate memories on a study's folds.

Same folds, same trained models as `convmem run` with that config (they are trained on first use
and reused after); only the methods change, so methods can be added to a study one at a time.
"""

from __future__ import annotations

import argparse


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("eval", help="evaluate one or more memories (none, window, window_full, classifier, dpm, mal, DPM variants) on a study's folds",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="YAML config of the study (or - for defaults plus overrides)")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.add_argument("--memory", action="append", required=True, metavar="METHOD",
                   help="memory/method to evaluate; repeat for several (e.g. --memory none --memory window --memory dpm); "
                        "METHOD@vad runs it on silero-vad segmentation mapped back to the gold turns")
    p.add_argument("--out", help="study folder (default: the config's `out`)")
    return p


def run(args) -> int:
    from convmem.commands.run import execute
    from convmem.config import load_config
    from convmem.run_config import RunConfig

    from convmem.study.methods import split_vad

    names = [split_vad(m) for m in dict.fromkeys(args.memory)]
    gold = [m for m, vad in names if not vad]
    vad = [m for m, vad in names if vad]
    cfg = load_config(RunConfig, None if args.config == "-" else args.config,
                      list(args.overrides) + [f"eval.methods=[{','.join(gold)}]",
                                              f"eval.vad_methods=[{','.join(vad)}]", "final=false"])
    execute(cfg, args.out, command="eval")
    return 0
