"""Cross-fitting inside a fold's training sessions: backbones that never heard some training speakers,
and what they predict for them.

Why: two things a fold's model learns from its training sessions must look as they will at test
time, on speakers the backbone never heard:

- the emotion tokens of a "predicted" training stream (`train.emotion_tokens: predicted`,
  slm/stream.py): at inference every earlier turn carries the model's own prediction, right about as
  often as it is on unseen speakers, so training writes back *out-of-fold* predictions;
- the backbone states MAL's adapter trains on (`crossfit.mal`): on its own training speakers a
  backbone is nearly always right, so MAL sees few errors and not the kind it meets on an unseen
  speaker; each training dialogue is read by the inner backbone that never heard its session.

As in stacking: the training sessions are split into `crossfit.folds` groups (sorted sessions dealt
round-robin, so a group is whole sessions: no speaker on both sides of an inner split). For each
group an SLM with the fold's own settings, but no emotion tokens (`emotion_tokens: none`), trains
on the other groups and reads every utterance of the group's dialogues alone (the `none` memory).
Each backbone and the table of predictions are saved beside the fold's model directory
(`<fold>/crossfit/`), so a killed study resumes there; the fold's own model still trains on every
training session.

Gold labels of the training sessions are used only to train the inner backbones, as the fold's own
backbone uses them; the held-out (test) sessions are never read here.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Callable

from convmem.corpus.types import Dialogue
from convmem.errors import ConfigError

TOKENS_FILE = "oof_tokens.json"
IDENTITY_FILE = "crossfit.json"


def inner_groups(train: list[Dialogue], k: int) -> list[list[str]]:
    """The training sessions dealt round-robin (sorted) into min(k, sessions) groups of whole
    sessions. ConfigError when there are fewer than 2 sessions (nothing to hold out)."""
    sessions = sorted({d.session for d in train})
    if len(sessions) < 2:
        raise ConfigError(f"crossfit.folds: cross-fitting needs at least 2 training sessions, got {len(sessions)}")
    k = max(2, min(k, len(sessions)))
    return [sessions[j::k] for j in range(k)]


def inner_backbones(cfg, train: list[Dialogue], coded: list, make_model: Callable, root: Path,
                    progress: Callable[[str], None] | None = None) -> list[tuple[list[str], object]]:
    """[(held-out sessions, frozen SLM trained on every other training session)] per inner group
    (`inner_groups`), each trained with the fold's settings but no emotion tokens, or loaded from
    `root`/k<j>/slm when a run saved it.

    coded: the fold's training CodedDialogues (originals, then copies; a copy goes with its source).
    make_model(): a fresh, untrained SLM of the fold's settings (slm.model.build_model)."""
    from convmem.slm.model import load_model, save_model
    from convmem.tokenizers.dialogue_audio import source_dialogue
    from convmem.train.loop import train_slm

    session_of = {d.dialogue_id: d.session for d in train}
    inner_cfg = dataclasses.replace(cfg.train, emotion_tokens="none")
    groups = inner_groups(train, cfg.crossfit.folds)
    claim(root, cfg, inner_cfg, groups, coded)
    out = []
    for j, held in enumerate(groups):
        part = root / f"k{j}"
        if not (part / "slm").is_dir():
            if progress is not None:
                progress(f"cross-fit backbone {j + 1}: held out {', '.join(held)}")
            fit = [cd for cd in coded if session_of[source_dialogue(cd.dialogue_id)] not in held]
            slm = make_model()
            slm = train_slm(slm, slm.slm_vocab, fit, inner_cfg, part / "checkpoints", resume=True)
            save_model(slm, part / "slm")
        slm, _, _ = load_model(part / "slm", merge=True)
        slm.eval().requires_grad_(False)
        out.append((held, slm))
    return out


def claim(root: Path, cfg, inner_cfg, groups: list[list[str]], coded: list) -> None:
    """Record in `root`/crossfit.json what its backbones and tables are made from (inner groups, the
    training dialogues, the SLM, training and tokenizer settings), or check that a folder made before
    says the same: reused backbones must never have trained on a session they are now asked about.
    ConfigError naming the first difference."""
    import hashlib

    from convmem.config import to_dict
    from convmem.fileio import atomic_write_json

    ids = hashlib.sha256("\n".join(sorted(cd.dialogue_id for cd in coded)).encode()).hexdigest()[:16]
    identity = {"groups": groups, "dialogues": ids, "slm": to_dict(cfg.slm), "train": to_dict(inner_cfg),
                "tokenizer": to_dict(getattr(cfg, "tokenizer", None))}
    identity = json.loads(json.dumps(identity))  # tuples as lists, as read back
    path = root / IDENTITY_FILE
    if path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        for key in identity:
            if saved.get(key) != identity[key]:
                raise ConfigError(f"{root}: cross-fitting there was made with other {key} ({IDENTITY_FILE}); "
                                  "delete that folder to cross-fit again")
        return
    if root.is_dir() and any(root.iterdir()):
        raise ConfigError(f"{root}: holds files of an unknown cross-fitting (no {IDENTITY_FILE}); delete it to cross-fit again")
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, identity)


def out_of_fold_tokens(cfg, train: list[Dialogue], coded: list, make_model: Callable, root: Path,
                       progress: Callable[[str], None] | None = None) -> dict[str, list[str]]:
    """{dialogue id: per utterance the label an inner backbone that never heard its session
    predicts for it alone} for every dialogue of `train` (originals; a perturbed copy takes its
    source's, `attach_tokens`).

    coded, make_model: as `inner_backbones`. root: `<fold>/crossfit`: the inner backbones and the
    table, each reused on a rerun."""
    import torch

    from convmem.engine.conversation import ConversationEngine
    from convmem.memory.context import ContextMemory

    table_file = root / TOKENS_FILE
    if table_file.is_file():
        claim(root, cfg, dataclasses.replace(cfg.train, emotion_tokens="none"),
              inner_groups(train, cfg.crossfit.folds), coded)
        return json.loads(table_file.read_text(encoding="utf-8"))
    session_of = {d.dialogue_id: d.session for d in train}
    labels = tuple(cfg.corpus.labels)
    tokens: dict[str, list[str]] = {}
    for held, slm in inner_backbones(cfg, train, coded, make_model, root, progress):
        vocab = slm.slm_vocab
        held_out = [cd for cd in coded if cd.dialogue_id in session_of and session_of[cd.dialogue_id] in held]
        engine = ConversationEngine(ContextMemory.none(slm, vocab.emotion_ids, cfg.slm.n_limit),
                                    vocab.audio_end_id, vocab.emotion_ids, cfg.slm.n_limit, "none")
        with torch.no_grad():
            results = engine.run([cd.inputs(vocab) for cd in held_out], keys=[cd.dialogue_id for cd in held_out],
                                 batch_size=cfg.eval.batch_size)
        for cd, res in zip(held_out, results):
            tokens[cd.dialogue_id] = [labels[int(k)] for k in res.predictions]
    from convmem.fileio import atomic_write_json

    atomic_write_json(table_file, tokens)
    return tokens


def backbone_index(train: list[Dialogue], backbones: list, coded: list) -> list[int]:
    """Per CodedDialogue of `coded` (originals or copies of `train`'s dialogues), the index into
    `backbones` (`inner_backbones`) of the one that held out its session: the backbone that never
    heard its speakers (MAL cross-fitting)."""
    from convmem.tokenizers.dialogue_audio import source_dialogue

    session_of = {d.dialogue_id: d.session for d in train}
    held_by = {s: j for j, (held, _) in enumerate(backbones) for s in held}
    return [held_by[session_of[source_dialogue(cd.dialogue_id)]] for cd in coded]


def attach_tokens(coded: list, tokens: dict[str, list[str]]) -> list:
    """`coded` with each dialogue's `tokens` set from the table (a perturbed copy: its source's).
    ConfigError naming a dialogue the table lacks or whose length differs."""
    from convmem.tokenizers.dialogue_audio import source_dialogue

    out = []
    for cd in coded:
        own = tokens.get(source_dialogue(cd.dialogue_id))
        if own is None or len(own) != len(cd.utterances):
            raise ConfigError(f"crossfit: no out-of-fold tokens for dialogue {cd.dialogue_id!r} "
                              f"({'missing' if own is None else f'{len(own)} for {len(cd.utterances)} utterances'}); "
                              "delete the fold's crossfit/ folder to recompute them")
        out.append(dataclasses.replace(cd, tokens=list(own)))
    return out


def token_accuracy(coded: list, tokens: dict[str, list[str]]) -> float | None:
    """Share of labelled original utterances whose out-of-fold token is their gold label (None:
    none labelled): how often the history's training tokens are wrong."""
    hits = total = 0
    for cd in coded:
        own = tokens.get(cd.dialogue_id)
        if own is None:
            continue
        for tok, gold in zip(own, cd.emotions):
            if gold is not None:
                total += 1
                hits += tok == gold
    return hits / total if total else None
