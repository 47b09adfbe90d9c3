"""`convmem train CONFIG --out MODEL_DIR`: train a model directory on every session of a corpus
(or `--sessions`): tokenizer, emotion SLM, classifier and MAL adapter, with a model card. The
result is what `convmem predict` and `convmem serve` load."""

from __future__ import annotations

import argparse


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("train", help="train a self-contained model directory (tokenizer, SLM, classifier, MAL) for predict/serve",
                       description=__doc__)
    p.add_argument("config", help="YAML config (or - for defaults plus overrides)")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.add_argument("--out", required=True, help="model directory to create (resumes if it exists)")
    p.add_argument("--sessions", nargs="+", help="train on these sessions only (default: all)")
    p.add_argument("--no-classifier", action="store_true", help="skip the classifier baseline")
    p.add_argument("--no-mal", action="store_true", help="skip the MAL adapter")
    return p


def run(args) -> int:
    from pathlib import Path

    from convmem.config import load_config
    from convmem.errors import ConfigError
    from convmem.study.folds import apply_threads, corpus_dialogues
    from convmem.study.training import train_fold_models
    from convmem.run_config import RunConfig

    cfg = load_config(RunConfig, None if args.config == "-" else args.config, args.overrides)
    apply_threads(cfg)
    out = Path(args.out)
    dialogues = corpus_dialogues(cfg, out.parent / f".{out.name}.corpus")
    sessions = sorted({d.session for d in dialogues})
    if args.sessions:
        unknown = sorted(set(args.sessions) - set(sessions))
        if unknown:
            raise ConfigError(f"--sessions: unknown session {unknown[0]!r} (corpus has {', '.join(sessions)})")
        sessions = sorted(args.sessions)
        dialogues = [d for d in dialogues if d.session in sessions]
    methods = ["none", "window", "dpm"] + ([] if args.no_classifier else ["classifier"]) + ([] if args.no_mal else ["mal"])
    info = {"fold": "final", "train_sessions": sessions, "test_sessions": []}
    train_fold_models(cfg, dialogues, out, methods, out.parent / ".convmem_cache", fold_info=info)
    print(f"model ready: {out}")
    return 0
