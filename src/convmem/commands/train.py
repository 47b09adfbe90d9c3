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
    p.add_argument("--out", required=True, help="model directory to create (resumes one this command made with the same settings)")
    p.add_argument("--sessions", nargs="+", help="train on these sessions only (default: all)")
    p.add_argument("--no-classifier", action="store_true", help="skip the classifier baseline")
    p.add_argument("--no-mal", action="store_true", help="skip the MAL adapter")
    p.add_argument("--force", action="store_true",
                   help="replace a model trained here with other settings (refused if OUT holds other files)")
    return p


def run(args) -> int:
    from pathlib import Path

    from convmem.config import load_config
    from convmem.errors import ConfigError
    from convmem.output_folder import claim_output_folder, record_settings
    from convmem.run_config import RunConfig
    from convmem.study.folds import apply_threads, corpus_dialogues
    from convmem.study.training import train_fold_models

    cfg = load_config(RunConfig, None if args.config == "-" else args.config, args.overrides)
    apply_threads(cfg)
    out = Path(args.out)
    settings = {**weight_settings(cfg), "sessions": sorted(args.sessions) if args.sessions else "all"}
    with claim_output_folder(out, "train", owned=OWNED, legacy=_legacy_model_dir, force=args.force):
        _check_legacy_config(out, settings)
        record_settings(out, "train", settings, owned=OWNED, force=args.force)
        # everything training keeps lives inside the model directory: nothing is shared with a
        # sibling model, and `rm -rf MODEL_DIR` forgets all of it
        dialogues = corpus_dialogues(cfg, out / WORK / "corpus")
        sessions = sorted({d.session for d in dialogues})
        if args.sessions:
            unknown = sorted(set(args.sessions) - set(sessions))
            if unknown:
                raise ConfigError(f"--sessions: unknown session {unknown[0]!r} (corpus has {', '.join(sessions)})")
            sessions = sorted(args.sessions)
            dialogues = [d for d in dialogues if d.session in sessions]
        from convmem.corpus.identity import corpus_sha256

        record_settings(out, "train", {"corpus_sha256": corpus_sha256(dialogues)}, field="data",
                        owned=[n for n in OWNED if n != WORK], force=args.force)
        methods = ["none", "window", "dpm"] + ([] if args.no_classifier else ["classifier"]) + ([] if args.no_mal else ["mal"])
        info = {"fold": "final", "train_sessions": sessions, "test_sessions": []}
        train_fold_models(cfg, dialogues, out, methods, out / WORK / "cache", fold_info=info,
                          checkpoint_dir=out / CHECKPOINTS / "slm")
    print(f"model ready: {out}")
    return 0


WORK = ".training"  # the corpus generated for this model and its code cache
CHECKPOINTS = ".checkpoints"  # the SLM's training checkpoints (a killed train resumes from them)
OWNED = ("bundle.json", "MODEL_CARD.md", "tokenizer", "slm", "classifier", "mal", WORK, CHECKPOINTS)
# settings that change nothing a model directory holds: where and how fast it is made, how it is scored
_NOT_WEIGHTS = ("name", "out", "threads", "final", "final_methods", "eval", "folds.test_sessions",
                "corpus.name", "corpus.caveat", "corpus.manifest")


def weight_settings(cfg) -> dict:
    """The config as far as it decides the model (every seed, the architecture, optimiser and
    corpus settings), without `_NOT_WEIGHTS`; the corpus itself is compared by content."""
    from convmem.config import to_dict

    d = to_dict(cfg)
    for key in _NOT_WEIGHTS:
        *path, last = key.split(".")
        node = d
        for k in path:
            node = node.get(k, {})
        node.pop(last, None)
    return d


def _legacy_model_dir(out) -> bool:
    """A model directory written before output markers existed (it has convmem's bundle.json)."""
    from convmem.bundle import BUNDLE_FILE, FORMAT

    import json

    try:
        return json.loads((out / BUNDLE_FILE).read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _check_legacy_config(out, settings: dict) -> None:
    """A model directory without recorded settings is compared with the config in its bundle.json."""
    from convmem.output_folder import diff_keys, read_marker

    marker = read_marker(out) or {}
    if "settings" in marker or not _legacy_model_dir(out):
        return
    import json

    from convmem.bundle import BUNDLE_FILE
    from convmem.config import from_dict, to_dict
    from convmem.errors import ConfigError
    from convmem.run_config import RunConfig

    recorded = json.loads((out / BUNDLE_FILE).read_text()).get("config") or {}
    try:
        recorded = weight_settings(from_dict(RunConfig, recorded))
    except (ConfigError, TypeError, ValueError):
        pass
    current = json.loads(json.dumps({k: v for k, v in settings.items() if k != "sessions"}))
    diff = diff_keys(recorded, current)
    if diff:
        raise ConfigError(f"{out}: holds a model trained with other settings (differs at: {', '.join(diff[:5])}); "
                          "use another folder")
