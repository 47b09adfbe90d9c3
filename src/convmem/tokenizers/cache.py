"""Tokenizers meet dialogues: each utterance's audio, fitting on chosen sessions, cached codes.

Cache key (choice): sha256 of the tokenizer fingerprint + the exact float32 16 kHz samples of the
utterance after loading/resampling. Keying on content rather than on path/mtime means a moved or
re-rendered corpus is handled correctly (same samples -> hit, any change -> miss) at the price of
decoding the audio again on a rerun, which costs milliseconds per utterance against the much
larger cost of the encoders. Layout: `root/<fingerprint[:16]>/<key>.npy`, each written
atomically, plus `root/<fingerprint[:16]>/tokenizer.json` saying which tokenizer filled it. Turn
prosody for prosody marks (float64[4], `convmem.audio.relative_prosody.turn_prosody`) is cached the
same way under the pseudo-fingerprint `PROSODY_VERSION` (bump it when `turn_prosody` changes).
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from convmem.corpus.types import Dialogue, Utterance
from convmem.errors import AudioError, ConfigError, ManifestError
from convmem.tokenizers.base import SAMPLE_RATE, SpeechTokenizer, n_frames

CACHE_ENV = "CONVMEM_CACHE"
PROSODY_VERSION = "turn-prosody-v1"


def default_cache_root() -> Path:
    """`$CONVMEM_CACHE/codes`, else `~/.cache/convmem/codes`."""
    base = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "convmem"
    return Path(base).expanduser() / "codes"


class CodeCache:
    """Codes per (tokenizer fingerprint, audio content) on disk; counts hits and misses."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(fingerprint: str, wave: np.ndarray) -> str:
        """sha256 hex of fingerprint + float32[samples] bytes (16 kHz)."""
        h = hashlib.sha256(fingerprint.encode())
        h.update(b"\0%d\0" % SAMPLE_RATE)
        h.update(np.ascontiguousarray(wave, dtype=np.float32).tobytes())
        return h.hexdigest()

    def path(self, fingerprint: str, key: str) -> Path:
        return self.root / fingerprint[:16] / f"{key}.npy"

    @staticmethod
    def _load(path: Path, valid, redo: str) -> np.ndarray | None:
        """The array at `path` when it is there, readable and `valid(array)`; else None (a damaged
        entry warns, saying it will `redo` the work, and counts as absent)."""
        if not path.is_file():
            return None
        try:
            found = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            warnings.warn(f"{path}: unreadable cache entry, {redo} ({exc})", stacklevel=3)
            return None
        if not valid(found):
            warnings.warn(f"{path}: cache entry has wrong shape/dtype, {redo}", stacklevel=3)
            return None
        return found

    @staticmethod
    def _save(path: Path, array: np.ndarray) -> None:
        from convmem.fileio import atomic_open

        with atomic_open(path, "wb") as fh:
            np.save(fh, array, allow_pickle=False)

    def get(self, fingerprint: str, wave: np.ndarray) -> np.ndarray | None:
        """Cached int64[frames] for this audio, or None (a damaged entry counts as absent)."""
        frames = n_frames(wave.size)
        return self._load(self.path(fingerprint, self.key(fingerprint, wave)),
                          lambda c: c.dtype == np.int64 and c.ndim == 1 and c.size == frames, "re-tokenizing")

    def put(self, fingerprint: str, wave: np.ndarray, codes: np.ndarray) -> Path:
        path = self.path(fingerprint, self.key(fingerprint, wave))
        self._save(path, np.asarray(codes, dtype=np.int64))
        return path

    def attach(self, tokenizer: SpeechTokenizer) -> None:
        """Let a tokenizer whose frame features are expensive and codebook-independent (a
        pretrained encoder's) keep them under `root/features`, so a refitted codebook (each LOSO
        fold) or a rerun does not run the encoder again. Others are left alone."""
        if hasattr(tokenizer, "cache_features_in") and not tokenizer.caches_features:
            tokenizer.cache_features_in(self.root / "features")

    def encode(self, tokenizer: SpeechTokenizer, wave: np.ndarray, fingerprint: str | None = None) -> np.ndarray:
        """Codes of float32[samples] at 16 kHz, from the cache or by running the tokenizer."""
        self.attach(tokenizer)
        fingerprint = fingerprint or tokenizer.fingerprint
        codes = self.get(fingerprint, wave)
        if codes is not None:
            self.hits += 1
            return codes
        self.misses += 1
        codes = np.asarray(tokenizer.encode(wave, SAMPLE_RATE), dtype=np.int64)
        self.put(fingerprint, wave, codes)
        return codes

    def prosody(self, wave: np.ndarray) -> np.ndarray:
        """float64[4] turn prosody of float32[samples] at 16 kHz, from the cache or measured."""
        from convmem.audio.relative_prosody import MARKS_PER_TURN, turn_prosody

        path = self.path(PROSODY_VERSION, self.key(PROSODY_VERSION, wave))
        found = self._load(path, lambda p: p.dtype == np.float64 and p.shape == (MARKS_PER_TURN,),
                           "measuring again")
        if found is not None:
            self.hits += 1
            return found
        self.misses += 1
        found = turn_prosody(wave)
        self._save(path, found)
        return found

    def describe(self, tokenizer: SpeechTokenizer, fingerprint: str) -> None:
        """Write which tokenizer filled `root/<fingerprint[:16]>` (for people browsing the cache)."""
        from convmem.fileio import atomic_write_json

        note = self.root / fingerprint[:16] / "tokenizer.json"
        if not note.exists():
            atomic_write_json(note, {"kind": tokenizer.kind, "fingerprint": fingerprint,
                                     "codebook_size": tokenizer.codebook_size, "frame_rate": tokenizer.frame_rate})


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


def _perturbed_copies(dialogues: list[Dialogue], augment) -> Iterator[tuple[str, Dialogue, list[np.ndarray]]]:
    """(copy id "<dialogue>#aug<k>", source dialogue, its utterances' perturbed waves) of every copy,
    in the order of `encode_perturbed_copies`; one perturbation per speaker and copy."""
    from convmem.audio.augment import draw_perturbations

    for dialogue in dialogues if augment.copies > 0 else []:
        waves = [utterance_waveform(u, dialogue) for u in dialogue.utterances]
        for k in range(1, augment.copies + 1):
            draws = draw_perturbations(augment, dialogue.dialogue_id, [u.speaker for u in dialogue.utterances], k)
            yield (f"{dialogue.dialogue_id}#aug{k}", dialogue,
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
