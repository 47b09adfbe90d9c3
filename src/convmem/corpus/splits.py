"""Train/dev/test splits by session, with no speaker on both sides.

- `loso_folds`: leave-one-session-out (IEMOCAP's 5 folds; RAVDESS pseudo-conversation sessions,
  one actor pair each). Optionally the session(s) after the test one (cyclically) become dev.
- `predefined_fold`: a fixed split named by sessions. MELD's sessions are its official
  train/dev/test splits; its speakers are show characters who appear in every split, so the
  speaker-disjointness rule cannot hold there. `predefined_fold` refuses such a split unless
  `allow_speaker_overlap=True`, and `speaker_overlap` says which speakers cross, so a report can
  state it.

Every fold is checked: a speaker on both sides raises ManifestError naming speaker and sessions.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from convmem.corpus.types import Dialogue
from convmem.errors import ManifestError


@dataclass(frozen=True)
class Fold:
    """One split: dialogue ids per side, in manifest order."""

    name: str
    test_sessions: tuple[str, ...]
    dev_sessions: tuple[str, ...]
    train_ids: tuple[str, ...]
    dev_ids: tuple[str, ...]
    test_ids: tuple[str, ...]


def sessions_of(dialogues: Iterable[Dialogue]) -> list[str]:
    """Sessions in first-seen order."""
    seen: dict[str, None] = {}
    for d in dialogues:
        seen.setdefault(d.session, None)
    return list(seen)


def loso_folds(dialogues: list[Dialogue], dev_sessions: int = 0) -> list[Fold]:
    """One fold per session (sorted by name): that session is test, `dev_sessions` following ones dev.

    Raises ManifestError if fewer than 2 + dev_sessions sessions exist or a speaker crosses sides.
    """
    sessions = sorted(sessions_of(dialogues))
    if len(sessions) < 2 + dev_sessions:
        raise ManifestError(f"leave-one-session-out needs at least {2 + dev_sessions} sessions, "
                            f"found {len(sessions)}: {sessions}")
    folds = []
    for i, test in enumerate(sessions):
        dev = tuple(sessions[(i + k) % len(sessions)] for k in range(1, dev_sessions + 1))
        folds.append(_make_fold(f"loso_{test}", dialogues, (test,), dev, allow_speaker_overlap=False))
    return folds


def predefined_fold(dialogues: list[Dialogue], test: Iterable[str] = ("test",), dev: Iterable[str] = ("dev",),
                    name: str = "official", allow_speaker_overlap: bool = False) -> Fold:
    """Fixed split: sessions in `test` / `dev` go there, every other session trains (MELD: train/dev/test)."""
    test, dev = tuple(test), tuple(dev)
    known = set(sessions_of(dialogues))
    unknown = [s for s in test + dev if s not in known]
    if unknown:
        raise ManifestError(f"split {name!r}: session(s) {unknown} not in the manifest (sessions: {sorted(known)})")
    return _make_fold(name, dialogues, test, dev, allow_speaker_overlap)


def speaker_overlap(dialogues: list[Dialogue], fold: Fold) -> dict[str, list[str]]:
    """Speakers heard on more than one side → the sides ("train", "dev", "test") they are on."""
    side = {}
    for did in fold.train_ids:
        side[did] = "train"
    for did in fold.dev_ids:
        side[did] = "dev"
    for did in fold.test_ids:
        side[did] = "test"
    where: dict[str, set[str]] = {}
    for d in dialogues:
        if d.dialogue_id in side:
            for spk in d.speakers:
                where.setdefault(spk, set()).add(side[d.dialogue_id])
    order = ("train", "dev", "test")
    return {s: [x for x in order if x in sides] for s, sides in sorted(where.items()) if len(sides) > 1}


def check_speaker_disjoint(dialogues: list[Dialogue], fold: Fold) -> None:
    """Raise ManifestError if any speaker is on two sides of `fold`."""
    crossing = speaker_overlap(dialogues, fold)
    if crossing:
        first = list(crossing.items())[:5]
        raise ManifestError(
            f"split {fold.name!r}: {len(crossing)} speaker(s) on more than one side, e.g. "
            + "; ".join(f"{s} in {'+'.join(sides)}" for s, sides in first)
            + " (speakers must be unique to a session, e.g. 'Ses01_F')"
        )


def _make_fold(name: str, dialogues: list[Dialogue], test: tuple[str, ...], dev: tuple[str, ...],
               allow_speaker_overlap: bool) -> Fold:
    if set(test) & set(dev):
        raise ManifestError(f"split {name!r}: session(s) {sorted(set(test) & set(dev))} are both test and dev")
    train_ids, dev_ids, test_ids = [], [], []
    for d in dialogues:
        (test_ids if d.session in test else dev_ids if d.session in dev else train_ids).append(d.dialogue_id)
    if not train_ids or not test_ids:
        raise ManifestError(f"split {name!r}: empty {'train' if not train_ids else 'test'} side")
    fold = Fold(name, test, dev, tuple(train_ids), tuple(dev_ids), tuple(test_ids))
    if not allow_speaker_overlap:
        check_speaker_disjoint(dialogues, fold)
    return fold
