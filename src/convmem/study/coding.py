"""A study's dialogues as the model reads them, through the one utterance encoder
(tokenizers/utterance_encoder.py): every utterance encoded once per fold (codes cached by the
tokenizer's fingerprint and the audio; prosody marks and frames when the model reads them), then
shaped as CodedDialogues (training) or per-utterance model inputs (evaluation).

Tables are keyed by utterance id, so folds and methods share one encoding.
"""

from __future__ import annotations

from pathlib import Path

from convmem.corpus.types import Dialogue
from convmem.tokenizers.utterance_encoder import Encoded, UtteranceEncoder


def encoder(tokenizer, cache_root: Path, *, prosody_marks: bool, frames: bool) -> UtteranceEncoder:
    """The encoder of a model with these reading settings, caching under `cache_root`."""
    from convmem.tokenizers.cache import CodeCache

    return UtteranceEncoder(tokenizer, prosody_marks=prosody_marks, frames=frames, cache=CodeCache(cache_root))


def coded(dialogue_id: str, source: Dialogue, table: Encoded):
    """`source`'s utterances as a CodedDialogue called `dialogue_id`, from their encodings."""
    from convmem.slm.stream import CodedDialogue

    enc = [table[u.id] for u in source.utterances]
    # a feature the model reads is on every utterance, one it does not read on none
    per_utt = lambda name: [getattr(e, name) for e in enc] if enc and getattr(enc[0], name) is not None else None  # noqa: E731
    return CodedDialogue(dialogue_id, [(e.codes, u.emotion) for e, u in zip(enc, source.utterances)],
                         per_utt("marks"), per_utt("frames"))


def training_dialogues(cfg, enc: UtteranceEncoder, train: list[Dialogue]) -> list:
    """The training dialogues as CodedDialogues, then `cfg.augment.copies` speaker-perturbed
    copies of each (may be none)."""
    table = enc.dialogues(train)
    return [coded(d.dialogue_id, d, table) for d in train] + _coded_copies(enc, train, cfg.augment)


def _coded_copies(enc: UtteranceEncoder, train: list[Dialogue], augment) -> list:
    """`augment.copies` speaker-perturbed copies of every dialogue of `train`, as CodedDialogues."""
    return [coded(copy_id, source, t) for copy_id, source, t in enc.perturbed_copies(train, augment)]


MAL_COPY_SEED = 1_000_003  # added to augment.seed: MAL's copies are never the SLM's (mal_train.copies)


def mal_copies(cfg, enc: UtteranceEncoder, train: list[Dialogue]) -> list:
    """`cfg.mal_train.copies` speaker-perturbed copies of every training dialogue for MAL alone, as
    CodedDialogues: the study's `augment` perturbation drawn with a seed of its own, apart from the
    SLM's copies (may be none)."""
    import dataclasses

    if not cfg.mal_train.copies:
        return []
    augment = dataclasses.replace(cfg.augment, copies=cfg.mal_train.copies,
                                  seed=(cfg.augment.seed + MAL_COPY_SEED) % 2**32)
    return _coded_copies(enc, train, augment)


def mal_split(slm_dialogues: list, own_copies: list, held: set[str]) -> tuple[list, list]:
    """MAL's (fit, validation) CodedDialogues. `slm_dialogues`: what the SLM trained on (originals
    and its copies); `own_copies`: `mal_copies`; `held`: ids of the validation dialogues (whole
    training sessions). Nothing of a held dialogue is fitted; validation reads the held originals
    and MAL's own copies of them, not the SLM's copies (voices the backbone has fit)."""
    from convmem.tokenizers.dialogue_audio import source_dialogue

    fit, val = [], []
    for cd, mal_only in [(cd, False) for cd in slm_dialogues] + [(cd, True) for cd in own_copies]:
        source = source_dialogue(cd.dialogue_id)
        if source not in held:
            fit.append(cd)
        elif mal_only or source == cd.dialogue_id:
            val.append(cd)
    return fit, val


def utterance_inputs(vocab, dialogue: Dialogue, table: Encoded) -> list:
    """The model input (`UtteranceInput`: ids + frames of a frames model, and the manifest's speaker)
    of each utterance of `dialogue`."""
    import dataclasses

    return [dataclasses.replace(table[u.id].model_input(vocab), speaker=u.speaker) for u in dialogue.utterances]
