"""The final model of a study: the same recipe trained on every session (no held-out fold)."""

from __future__ import annotations

from pathlib import Path


def train_final(cfg, out: Path) -> Path:
    """Train tokenizer, SLM and the parts `cfg.final_methods` need (default: every evaluated
    method's: classifier, MAL) on all sessions but `folds.exclude_sessions` into `out/final_model`."""
    from convmem.corpus.manifest import read_manifests
    from convmem.study.folds import included
    from convmem.study.methods import method_list
    from convmem.study.training import train_fold_models

    manifests = cfg.corpus.manifests() or [out / "corpus" / "manifest.jsonl"]
    excluded = cfg.folds.exclude_sessions  # never read by the study, nor by its final model
    dialogues = included(cfg, read_manifests(manifests, labels=cfg.corpus.labels, unread_sessions=excluded))
    sessions = sorted({d.session for d in dialogues})
    info = {"fold": "final", "train_sessions": sessions, "test_sessions": []}
    methods = method_list(cfg) if cfg.final_methods is None else list(cfg.final_methods)
    return train_fold_models(cfg, dialogues, out / "final_model", methods, out / "cache", fold_info=info)
