"""The corpus a study config names, its folds, and the torch threads it runs with."""

from __future__ import annotations

from pathlib import Path

from convmem.corpus.types import Dialogue
from convmem.errors import ConfigError, ConvmemError


def apply_threads(cfg) -> None:
    """`threads` of the config, for every command that trains or evaluates (run, train)."""
    if cfg.threads:
        import torch

        torch.set_num_threads(cfg.threads)


def corpus_dialogues(cfg, synth_dir: Path, rank: int = 0) -> list[Dialogue]:
    """The config's corpus: its manifest(s), or the synthetic preset generated once into `synth_dir`,
    without the sessions `folds.exclude_sessions` names (`included`)."""
    from convmem.corpus.manifest import read_manifest, read_manifests

    unread = cfg.folds.exclude_sessions
    if cfg.corpus.manifest:
        return included(cfg, read_manifests(cfg.corpus.manifests(), labels=cfg.corpus.labels, unread_sessions=unread))
    manifest = synth_dir / "manifest.jsonl"
    if not manifest.exists():
        if rank != 0:
            raise ConvmemError("the synthetic corpus must be generated before a multi-process run "
                               "(run `convmem synth` and set corpus.manifest)")
        from convmem.corpus.synth import synthesize_corpus

        synthesize_corpus(synth_dir, preset=cfg.corpus.synth_preset, seed=cfg.corpus.synth_seed)
    return included(cfg, read_manifest(manifest, labels=cfg.corpus.labels, unread_sessions=unread))


def included(cfg, dialogues: list[Dialogue]) -> list[Dialogue]:
    """`dialogues` without those of `cfg.folds.exclude_sessions`: sessions the study never reads,
    neither to train nor to test (a validation study keeps the real held-out session out of it;
    the manifest readers do not even open their audio). ConfigError naming an unknown session."""
    excluded = set(cfg.folds.exclude_sessions)
    if not excluded:
        return dialogues
    known = {d.session for d in dialogues}
    missing = sorted(excluded - known)
    if missing:
        raise ConfigError(f"folds.exclude_sessions: unknown session {missing[0]!r} "
                          f"(corpus has {', '.join(sorted(known))})")
    return [d for d in dialogues if d.session not in excluded]


def study_folds(cfg, dialogues: list[Dialogue]):
    """The folds `cfg.folds` names (LOSO, limited to folds.test_sessions, or the corpus's official
    split), each checked to share no speaker between its sides. `dialogues`: the study's, already
    without folds.exclude_sessions (`corpus_dialogues`)."""
    from convmem.corpus.splits import check_speaker_disjoint, loso_folds, predefined_fold

    if cfg.folds.scheme == "official":
        return [predefined_fold(dialogues, allow_speaker_overlap=cfg.folds.allow_speaker_overlap)]
    folds = loso_folds(dialogues)
    if cfg.folds.test_sessions is not None:
        wanted = set(cfg.folds.test_sessions)
        known = {s for f in folds for s in f.test_sessions}
        missing = sorted(wanted - known)
        if missing:
            raise ConfigError(f"folds.test_sessions: unknown session {missing[0]!r} (corpus has {', '.join(sorted(known))})")
        folds = [f for f in folds if set(f.test_sessions) & wanted]
    for f in folds:
        check_speaker_disjoint(dialogues, f)
    return folds


def fold_info(fold, by_id: dict[str, Dialogue]) -> dict:
    """What a fold's model card records of it."""
    return {
        "fold": fold.name,
        "test_sessions": list(fold.test_sessions),
        "train_sessions": sorted({by_id[i].session for i in fold.train_ids}),
        "train_dialogues": len(fold.train_ids),
        "test_dialogues": len(fold.test_ids),
    }
