"""Tokenizers meet dialogues: each utterance's audio, fitting a tokenizer on chosen sessions, the
codes, turn prosody marks and continuous frames of whole dialogues (through a CodeCache when given),
and speaker-perturbed copies of training dialogues.

These are the offline passes behind `tokenizers/utterance_encoder.py`, which is what callers use.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from convmem.corpus.types import Dialogue, Utterance
from convmem.errors import AudioError, ConfigError, ManifestError
from convmem.tokenizers.base import SAMPLE_RATE, SpeechTokenizer, n_frames
from convmem.tokenizers.cache import CodeCache

def utterance_waveform(utterance: Utterance, dialogue: Dialogue) -> np.ndarray:
    """float32[samples] at 16 kHz: the utterance's own file, else its [start, end) of the dialogue audio."""
    from convmem.audio.io import load_audio

    if utterance.audio is not None:
        return load_audio(utterance.audio)
    if dialogue.audio is not None:
        return load_audio(dialogue.audio, start=utterance.start, end=utterance.end)
    raise AudioError(
        f"dialogue {dialogue.dialogue_id}, utterance {utterance.id}: no audio "
        "(neither the utterance nor the dialogue has an 'audio' path)"
    )


def encode_utterance(
    tokenizer: SpeechTokenizer, utterance: Utterance, dialogue: Dialogue, cache: CodeCache | None = None
) -> np.ndarray:
    """int64[frames] codes of one utterance (through `cache` when given)."""
    return _codes(tokenizer, utterance_waveform(utterance, dialogue), cache)


def _codes(tokenizer: SpeechTokenizer, wave: np.ndarray, cache: CodeCache | None,
           fingerprint: str | None = None) -> np.ndarray:
    """int64[frames] codes of float32[samples] at 16 kHz, through `cache` when given."""
    if cache is None:
        return np.asarray(tokenizer.encode(wave, SAMPLE_RATE), dtype=np.int64)
    return cache.encode(tokenizer, wave, fingerprint)


def encode_dialogues(
    tokenizer: SpeechTokenizer,
    dialogues: Iterable[Dialogue],
    cache: CodeCache | None = None,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """Codes of every utterance: {utterance id: int64[frames]}, with a progress bar.

    Raises ManifestError when an utterance id occurs twice (ids key the result).
    """
    from tqdm import tqdm

    dialogues = list(dialogues)
    fingerprint = tokenizer.fingerprint if cache is not None else None
    if cache is not None:
        cache.describe(tokenizer, fingerprint)
    total = sum(len(d.utterances) for d in dialogues)
    out: dict[str, np.ndarray] = {}
    with tqdm(total=total, desc=f"tokenize ({tokenizer.kind})", unit="utt", disable=not progress) as bar:
        for dialogue in dialogues:
            for utt in dialogue.utterances:
                if utt.id in out:
                    raise ManifestError(f"dialogue {dialogue.dialogue_id}: utterance id {utt.id!r} occurs twice")
                out[utt.id] = _codes(tokenizer, utterance_waveform(utt, dialogue), cache, fingerprint)
                bar.update(1)
    return out


def _prosody(wave: np.ndarray, cache: CodeCache | None) -> np.ndarray:
    from convmem.audio.relative_prosody import turn_prosody

    return turn_prosody(wave) if cache is None else cache.prosody(wave)


def _dialogue_marks(dialogue: Dialogue, turns: list[np.ndarray]) -> dict[str, np.ndarray]:
    """{utterance id: int64[4] marks} of `dialogue` from its turns' prosody float64[4], in order."""
    from convmem.audio.relative_prosody import conversation_marks

    marks = conversation_marks([u.speaker for u in dialogue.utterances], turns)
    return {u.id: m for u, m in zip(dialogue.utterances, marks)}


def measure_marks(dialogues: Iterable[Dialogue], progress: bool = True,
                  cache: CodeCache | None = None) -> dict[str, np.ndarray]:
    """Speaker-relative prosody marks of every utterance (`convmem.audio.relative_prosody`): each
    turn against its speaker's earlier turns of the same dialogue; {utterance id: int64[4]}.

    Reads each utterance's audio once more (decoding is cheap next to the F0 tracker, ~20 ms per
    turn); each turn's prosody goes through `cache` when given.
    """
    from tqdm import tqdm

    dialogues = list(dialogues)
    out: dict[str, np.ndarray] = {}
    with tqdm(total=sum(len(d.utterances) for d in dialogues), desc="prosody marks", unit="utt",
              disable=not progress) as bar:
        for dialogue in dialogues:
            turns = []
            for utt in dialogue.utterances:
                turns.append(_prosody(utterance_waveform(utt, dialogue), cache))
                bar.update(1)
            out.update(_dialogue_marks(dialogue, turns))
    return out


def fit_on_dialogues(
    tokenizer: SpeechTokenizer,
    dialogues: Iterable[Dialogue],
    sessions: Iterable[str],
    progress: bool = True,
    cache: CodeCache | None = None,
) -> SpeechTokenizer:
    """Fit `tokenizer` on the utterance audio of the dialogues whose session is in `sessions` only.

    `cache`: a code cache whose feature store the tokenizer may use (`CodeCache.attach`).

    Dialogues of other sessions are skipped, never read. Raises ConfigError when `sessions` is
    empty, names a session absent from `dialogues` (a typo would silently fit on less), or the
    tokenizer is not a trained kind.
    """
    from tqdm import tqdm

    if not hasattr(tokenizer, "fit"):
        raise ConfigError(f"tokenizer kind {tokenizer.kind!r} has nothing to fit")
    wanted = {str(s) for s in sessions}
    if not wanted:
        raise ConfigError("fit_on_dialogues: no training sessions given")
    dialogues = list(dialogues)
    missing = sorted(wanted - {d.session for d in dialogues})
    if missing:
        raise ConfigError(f"fit_on_dialogues: session(s) {missing} not found among the dialogues")
    chosen = [d for d in dialogues if d.session in wanted]
    if cache is not None:
        cache.attach(tokenizer)

    def waves() -> Iterator[np.ndarray]:
        total = sum(len(d.utterances) for d in chosen)
        with tqdm(total=total, desc=f"fit {tokenizer.kind}", unit="utt", disable=not progress) as bar:
            for dialogue in chosen:
                for utt in dialogue.utterances:
                    yield utterance_waveform(utt, dialogue)
                    bar.update(1)

    if getattr(tokenizer, "needs_text", False):  # learns from transcripts too (ctc-kmeans)
        texts = [utt.text for dialogue in chosen for utt in dialogue.utterances]
        return tokenizer.fit(waves(), SAMPLE_RATE, texts=texts, progress=progress)
    return tokenizer.fit(waves(), SAMPLE_RATE)


def encode_perturbed_copies(
    tokenizer: SpeechTokenizer,
    dialogues: Iterable[Dialogue],
    augment,
    cache: CodeCache | None = None,
    progress: bool = True,
    marks: bool = False,
) -> list[tuple[str, Dialogue, dict[str, np.ndarray], dict[str, np.ndarray] | None]]:
    """Codes of `augment.copies` speaker-perturbed copies of every dialogue (training data only;
    see `convmem.audio.augment`): [(copy id "<dialogue>#aug<k>", source dialogue,
    {utterance id: int64[frames]}, {utterance id: prosody marks int64[4]} when `marks` else None)].

    Every speaker of a copy gets one perturbation for the whole copy, so the copy is a coherent
    conversation of new voices. Cached like any audio (the key is the perturbed samples).
    """
    from tqdm import tqdm

    dialogues = list(dialogues)
    fingerprint = tokenizer.fingerprint if cache is not None else None
    total = augment.copies * sum(len(d.utterances) for d in dialogues)
    out = []
    with tqdm(total=total, desc=f"tokenize perturbed copies ({tokenizer.kind})", unit="utt",
              disable=not progress) as bar:
        for copy_id, dialogue, moved in _perturbed_copies(dialogues, augment):
            codes, turns = {}, []
            for utt, wave in zip(dialogue.utterances, moved):
                codes[utt.id] = _codes(tokenizer, wave, cache, fingerprint)
                if marks:
                    turns.append(_prosody(wave, cache))
                bar.update(1)
            out.append((copy_id, dialogue, codes, _dialogue_marks(dialogue, turns) if marks else None))
    return out


COPY_MARK = "#aug"  # a perturbed copy's id: "<source dialogue id>#aug<k>"


def copy_id(dialogue_id: str, k: int) -> str:
    """The id of the k-th (1-based) speaker-perturbed copy of dialogue `dialogue_id`."""
    return f"{dialogue_id}{COPY_MARK}{k}"


def source_dialogue(dialogue_id: str) -> str:
    """The dialogue a perturbed copy was made from (a dialogue that is no copy: itself)."""
    return dialogue_id.split(COPY_MARK)[0]


def _perturbed_copies(dialogues: list[Dialogue], augment) -> Iterator[tuple[str, Dialogue, list[np.ndarray]]]:
    """(copy id "<dialogue>#aug<k>", source dialogue, its utterances' perturbed waves) of every copy,
    in the order of `encode_perturbed_copies`; one perturbation per speaker and copy."""
    from convmem.audio.augment import draw_perturbations

    for dialogue in dialogues if augment.copies > 0 else []:
        waves = [utterance_waveform(u, dialogue) for u in dialogue.utterances]
        for k in range(1, augment.copies + 1):
            draws = draw_perturbations(augment, dialogue.dialogue_id, [u.speaker for u in dialogue.utterances], k)
            yield (copy_id(dialogue.dialogue_id, k), dialogue,
                   [draws[u.speaker].apply(w) for u, w in zip(dialogue.utterances, waves)])


FRAMES_BATCH = 32  # utterances per `frames_batch` call


def dialogue_frames(tokenizer, dialogues: Iterable[Dialogue], progress: bool = True) -> dict[str, np.ndarray]:
    """Continuous frames of every utterance (a tokenizer that `offers_frames`): {utterance id:
    float32[n_frames, D]}, one frame per code of `encode_dialogues`. Caching is the tokenizer's
    own (whisper-kmeans keeps its features by audio content), so a rerun or another fold does not
    run the encoder again."""
    dialogues = list(dialogues)
    return _frames_of(tokenizer, ((u.id, utterance_waveform(u, d)) for d in dialogues for u in d.utterances),
                      sum(len(d.utterances) for d in dialogues), "frames", progress)


def perturbed_copy_frames(tokenizer, dialogues: Iterable[Dialogue], augment, progress: bool = True
                          ) -> list[dict[str, np.ndarray]]:
    """Frames of the perturbed copies of `encode_perturbed_copies` (same copies, same order):
    per copy {utterance id: float32[n_frames, D]}."""
    dialogues = list(dialogues)
    out = []
    for _, dialogue, moved in _perturbed_copies(dialogues, augment):
        out.append(_frames_of(tokenizer, ((u.id, w) for u, w in zip(dialogue.utterances, moved)),
                              len(moved), "frames of a perturbed copy", False))
    return out


def _frames_of(tokenizer, items: Iterable[tuple[str, np.ndarray]], total: int, what: str,
               progress: bool) -> dict[str, np.ndarray]:
    from tqdm import tqdm

    out: dict[str, np.ndarray] = {}
    batch: list[tuple[str, np.ndarray]] = []

    def flush() -> None:
        for (uid, wave), f in zip(batch, tokenizer.frames_batch([w for _, w in batch], SAMPLE_RATE)):
            f = np.asarray(f, dtype=np.float32)
            if f.ndim != 2 or f.shape[0] != n_frames(wave.size):
                raise ConfigError(f"{tokenizer.kind}: frames of shape {f.shape} for {n_frames(wave.size)} codes")
            out[uid] = f
        bar.update(len(batch))
        batch.clear()

    with tqdm(total=total, desc=f"{what} ({tokenizer.kind})", unit="utt", disable=not progress) as bar:
        for uid, wave in items:
            if uid in out or any(uid == b for b, _ in batch):
                raise ManifestError(f"utterance id {uid!r} occurs twice")
            batch.append((uid, wave))
            if len(batch) == FRAMES_BATCH:
                flush()
        if batch:
            flush()
    return out
