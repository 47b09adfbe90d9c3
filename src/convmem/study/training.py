"""One fold's model directory: the tokenizer fitted on the training dialogues only, then the
emotion SLM, the classifier baseline and the MAL adapter trained on them (the optional parts only
when a listed method reads them, memory/registry.py), and a model card.

Each part is saved as soon as it exists and skipped on a rerun, so a killed study resumes at the
part it was training (the SLM loop also resumes from its checkpoints)."""

from __future__ import annotations

import functools
from pathlib import Path

from convmem.config import to_dict
from convmem.corpus.types import Dialogue
from convmem.eval.majority import label_counts
from convmem.study import coding


def train_fold_models(cfg, train: list[Dialogue], model_dir: Path, methods: list[str],
                      cache_root: Path, fold_info: dict | None = None, checkpoint_dir: Path | None = None) -> Path:
    """Fit the tokenizer on `train` only, then train the SLM, classifier and MAL adapter; each part
    is saved into `model_dir` as soon as it exists, and skipped on a rerun. The SLM's training
    checkpoints go to `checkpoint_dir` (default: `checkpoints/slm` beside `model_dir`, in the fold's
    own folder; `convmem train` keeps them inside the model directory)."""
    import torch

    from convmem.bundle import BUNDLE_FILE, save_parts
    from convmem.slm.model import build_model, load_model, make_vocab
    from convmem.study.methods import parts_to_train
    from convmem.tokenizers.base import build_tokenizer, load_tokenizer

    # the order of every random draw below is part of a study's results: keep it
    torch.manual_seed(cfg.seed)
    labels = tuple(cfg.corpus.labels)
    parts = parts_to_train(methods)
    common = dict(labels=labels, n_limit=cfg.slm.n_limit, config=to_dict(cfg), dpm_config=cfg.dpm,
                  extra={"training": training_summary(train, labels)})
    if (model_dir / "tokenizer").is_dir():
        tokenizer = load_tokenizer(model_dir / "tokenizer")
    else:
        from convmem.tokenizers.cache import CodeCache
        from convmem.tokenizers.dialogue_audio import fit_on_dialogues

        tokenizer = build_tokenizer(cfg.tokenizer.kind, **cfg.tokenizer.options)
        sessions = sorted({d.session for d in train})
        fit_on_dialogues(tokenizer, train, sessions, cache=CodeCache(cache_root))
        save_parts(model_dir, tokenizer=tokenizer, **common)

    @functools.cache
    def encoder():
        return coding.encoder(tokenizer, cache_root, prosody_marks=cfg.slm.prosody_marks, frames=cfg.slm.reads_frames)

    @functools.cache
    def coded():
        # made only when a part is trained: a rerun with every part saved (`convmem eval` on a
        # finished study) does not re-read, re-hash or re-perturb the training audio
        return coding.training_dialogues(cfg, encoder(), train)

    checkpoints = checkpoint_dir or model_dir.parent / "checkpoints" / "slm"
    # the cross-fitting's inner backbones and tables live beside the SLM's checkpoints: the fold's
    # own folder in a study, hidden inside the model directory for `convmem train`
    crossfit_root = checkpoints.with_name(checkpoints.name + "_crossfit")

    @functools.cache
    def new_vocab():
        # one for the SLM and the inner backbones: an HF backbone's vocabulary loads its tokenizer
        return make_vocab(cfg.slm, tokenizer.codebook_size, labels)

    @functools.cache
    def slm_data():
        # what the SLM (and the classifier) read: with `train.emotion_tokens: predicted`, every turn's
        # written-back token is an out-of-fold prediction (study/crossfit.py)
        if cfg.train.emotion_tokens != "predicted":
            return coded()
        from convmem.study import crossfit

        tokens = crossfit.out_of_fold_tokens(cfg, train, coded(), lambda: build_model(cfg.slm, new_vocab(), frame_dim()),
                                             crossfit_root)
        return crossfit.attach_tokens(coded(), tokens)

    def frame_dim():
        return next(f.shape[1] for cd in coded() for f in cd.frames) if cfg.slm.reads_frames else None

    if (model_dir / "slm").is_dir():
        slm, vocab, _ = load_model(model_dir / "slm", merge=True)
    else:
        from convmem.train.loop import train_slm

        vocab = new_vocab()
        data = slm_data()
        slm = build_model(cfg.slm, vocab, frame_dim())
        slm = train_slm(slm, vocab, data, cfg.train, checkpoints, resume=True)
        save_parts(model_dir, slm=slm, **common)
        slm, vocab, _ = load_model(model_dir / "slm", merge=True)
    slm.eval()
    for p in slm.parameters():
        p.requires_grad_(False)

    if "classifier" in parts and not (model_dir / "classifier").is_dir():
        from convmem.slm.classifier import EmotionClassifier
        from convmem.slm.stream import dialogue_stream
        from convmem.train.classifier_trainer import train_classifier, windows_from_stream

        windows = [w for cd in slm_data() for w in windows_from_stream(dialogue_stream(cd, vocab, cfg.train.emotion_tokens), cfg.slm.n_limit)]
        clf = EmotionClassifier.from_slm(slm.get_input_embeddings(), cfg.classifier_config())
        clf = train_classifier(clf, windows, cfg.classifier_train)
        save_parts(model_dir, classifier=clf, **common)

    if "mal" in parts and not (model_dir / "mal").is_dir():
        from convmem.memory.mal import MALMemory
        from convmem.fileio import atomic_write_json
        from convmem.train.mal_trainer import UtteranceTokens, train_mal

        mal_cfg = cfg.mal_config(vocab.emotion_ids, (vocab.audio_offset, vocab.audio_offset + vocab.codebook_size))
        adapter = MALMemory.build(slm, mal_cfg).adapter
        held = set(mal_validation_dialogues(train, cfg.mal_train.val_sessions))
        own = coding.mal_copies(cfg, encoder(), train)
        tokens = lambda cd: [UtteranceTokens(x.ids, None if e is None else labels.index(e), x.frames)  # noqa: E731
                             for x, e in zip(cd.inputs(vocab), cd.emotions)]
        fit_coded, val_coded = coding.mal_split(coded(), own, held)
        fit, val = ([tokens(cd) for cd in part] for part in (fit_coded, val_coded))
        mark_ids = (vocab.mark_offset, vocab.size) if vocab.prosody_marks else None
        backbones, where = slm, {}
        if cfg.crossfit.mal:  # states of backbones that never heard the speakers (study/crossfit.py)
            from convmem.study import crossfit

            inner = crossfit.inner_backbones(cfg, train, coded(), lambda: build_model(cfg.slm, vocab, frame_dim()),
                                             crossfit_root)
            backbones = [b for _, b in inner]
            where = {"backbone_of": crossfit.backbone_index(train, inner, fit_coded),
                     "val_backbone_of": crossfit.backbone_index(train, inner, val_coded)}
        result = train_mal(backbones, adapter, fit, cfg.mal_train, mal_cfg, vocab.audio_end_id,
                           mark_id_range=mark_ids, val_dialogues=val, **where)
        save_parts(model_dir, mal_adapter=adapter, mal_config=mal_cfg, **common)
        atomic_write_json(model_dir / "mal" / "train_log.json",
                          {"best_epoch": result.best_epoch, "val_losses": result.val_losses,
                           "val_accuracies": result.val_accuracies, "val_dialogues": len(val),
                           "train_dialogues": len(fit), "mal_only_copies": len(own),
                           "crossfit": bool(cfg.crossfit.mal),
                           "steps": len(result.losses)}, indent=1)

    if not (model_dir / "MODEL_CARD.md").exists():
        from convmem.model_card import render_card

        save_parts(model_dir, card=render_card(cfg, fold_info or {}, train), **common)
    assert (model_dir / BUNDLE_FILE).exists()
    return model_dir


def training_summary(train: list[Dialogue], labels) -> dict:
    """What a model directory records of its training data (bundle.json "training"): the scored
    utterances per label (so a majority-class row can be scored on any other corpus), the counts of
    each speaker's label-to-next-label turns (the `inertia` memories' transitions), and the
    sessions and speakers it heard (so an evaluation can say when they reappear)."""
    from convmem.memory.inertia import transition_counts

    return {"label_counts": label_counts(train, labels), "dialogues": len(train),
            "speaker_transitions": transition_counts(train, labels),
            "sessions": sorted({d.session for d in train}),
            "speakers": sorted({u.speaker for d in train for u in d.utterances})}


def mal_validation_dialogues(train: list[Dialogue], n_sessions: int) -> list[str]:
    """Ids of the training dialogues MAL validates on: those of the last `n_sessions` training
    sessions (sorted by name), so they are speakers MAL did not train on and never the test fold.
    [] when fewer than two sessions would be left to train (a one-session fold trains on all)."""
    sessions = sorted({d.session for d in train})
    if n_sessions < 1 or len(sessions) - n_sessions < 1:
        return []
    held = set(sessions[-n_sessions:])
    return [d.dialogue_id for d in train if d.session in held]
