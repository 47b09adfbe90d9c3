"""Manifest read/write with validation that names file, line and field.

Format (DESIGN.md): JSONL, one dialogue a line::

    {"dialogue_id", "session", "audio"?, "utterances": [{"id", "speaker", "start", "end",
     "audio"?, "emotion": "neu"|"hap"|"sad"|"ang"|null, "text"?}]}

Paths are relative to the manifest's folder. Writing validates everything first and then
replaces the file atomically, so a bad dialogue never leaves a half-written manifest.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path

from convmem.corpus.turn_times import check_turn_times
from convmem.corpus.types import KNOWN_LABELS, Dialogue, Utterance
from convmem.errors import ManifestError
from convmem.fileio import atomic_open



def read_manifest(
    path: str | Path,
    labels: Iterable[str] | None = None,
    check_audio: bool = True,
    unread_sessions: Iterable[str] = (),
) -> list[Dialogue]:
    """Read and validate a manifest.

    Args:
        path: the JSONL file.
        labels: allowed emotion labels (default: every label convmem knows).
        check_audio: verify that audio files exist and that times lie inside the audio.
        unread_sessions: sessions whose audio is not opened, not even to check it (a study that
            excludes them never reads them); their records are still parsed and returned.
    Raises:
        ManifestError naming `path:line` and the field for every kind of bad input, and naming
        `path` for a manifest without a single dialogue.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found")
    allowed = frozenset(labels) if labels is not None else KNOWN_LABELS
    base = path.parent
    dialogues: list[Dialogue] = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ManifestError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
            dialogues.append(_parse_dialogue(obj, base, where))
    if not dialogues:
        # said here, naming the file: later steps would only see "0 sessions"
        raise ManifestError(f"{path}: no dialogues (the manifest is empty)")
    validate_dialogues(dialogues, allowed, check_audio=check_audio, origin=path, unread_sessions=unread_sessions)
    return dialogues


def read_manifests(paths: Iterable[str | Path], labels: Iterable[str] | None = None,
                   unread_sessions: Iterable[str] = ()) -> list[Dialogue]:
    """Read several manifests (e.g. one per corpus) into one list, in the order given.

    Each is read and validated as by `read_manifest`; then dialogue, session and utterance ids must
    stay unique across files, because folds are made of sessions and caches are keyed by ids. A
    collision is a ManifestError naming both files (prefix the ids by corpus, as the loaders do).
    `unread_sessions`: as for `read_manifest`.
    """
    paths = [Path(p) for p in paths]
    unread_sessions = frozenset(unread_sessions)
    if not paths:
        raise ManifestError("no manifest given")
    labels = None if labels is None else list(labels)
    owners: dict[str, dict[str, Path]] = {"session": {}, "dialogue id": {}, "utterance id": {}}
    merged: list[Dialogue] = []
    for i, path in enumerate(paths):
        if path in paths[:i]:
            raise ManifestError(f"{path}: manifest listed twice")
        dialogues = read_manifest(path, labels=labels, unread_sessions=unread_sessions)
        found = {"session": {d.session for d in dialogues},
                 "dialogue id": {d.dialogue_id for d in dialogues},
                 "utterance id": {u.id for d in dialogues for u in d.utterances}}
        for kind, ids in found.items():
            clash = sorted(ids & owners[kind].keys())
            if clash:
                raise ManifestError(f"{path}: {kind} {clash[0]!r} is also in {owners[kind][clash[0]]} "
                                    f"({len(clash)} shared); mixed manifests need distinct ids")
            owners[kind].update(dict.fromkeys(ids, path))
        merged.extend(dialogues)
    return merged


def write_manifest(
    path: str | Path,
    dialogues: Iterable[Dialogue],
    labels: Iterable[str] | None = None,
    check_audio: bool = True,
) -> Path:
    """Validate `dialogues`, then write them atomically as JSONL at `path`."""
    path = Path(path)
    dialogues = list(dialogues)
    allowed = frozenset(labels) if labels is not None else KNOWN_LABELS
    validate_dialogues(dialogues, allowed, check_audio=check_audio, origin=path)
    base = path.parent.resolve()
    with atomic_open(path, "w", encoding="utf-8") as fh:
        for d in dialogues:
            fh.write(json.dumps(d.to_json(base), ensure_ascii=False) + "\n")
    return path


def _parse_dialogue(obj, base: Path, where: str) -> Dialogue:
    if not isinstance(obj, dict):
        raise ManifestError(f"{where}: a dialogue must be a JSON object, got {type(obj).__name__}")
    did = _field(obj, "dialogue_id", str, where)
    session = _field(obj, "session", str, where)
    audio = obj.get("audio")
    if audio is not None and not isinstance(audio, str):
        raise ManifestError(f"{where}: field 'audio' must be a string path")
    utts_raw = _field(obj, "utterances", list, where)
    utts = []
    for i, u in enumerate(utts_raw):
        uw = f"{where}: utterances[{i}]"
        if not isinstance(u, dict):
            raise ManifestError(f"{uw}: must be a JSON object")
        uaudio = u.get("audio")
        if uaudio is not None and not isinstance(uaudio, str):
            raise ManifestError(f"{uw}.audio: must be a string path")
        emotion = u.get("emotion")
        if emotion is not None and not isinstance(emotion, str):
            raise ManifestError(f"{uw}.emotion: must be a string label or null")
        text = u.get("text")
        utts.append(
            Utterance(
                id=_field(u, "id", str, uw, dot=True),
                speaker=_field(u, "speaker", str, uw, dot=True),
                start=_number(u, "start", uw),
                end=_number(u, "end", uw),
                emotion=emotion,
                audio=(base / uaudio) if uaudio else None,
                text=text if isinstance(text, str) else None,
            )
        )
    return Dialogue(dialogue_id=did, session=session, utterances=utts,
                    audio=(base / audio) if audio else None)


def _field(obj: dict, name: str, typ: type, where: str, dot: bool = False):
    sep = "." if dot else ": field "
    if name not in obj:
        raise ManifestError(f"{where}{sep}{name}: missing required field")
    val = obj[name]
    if not isinstance(val, typ) or (typ is str and not val):
        raise ManifestError(f"{where}{sep}{name}: expected a non-empty {typ.__name__}, got {val!r}")
    return val


def _number(obj: dict, name: str, where: str) -> float:
    if name not in obj:
        raise ManifestError(f"{where}.{name}: missing required field")
    val = obj[name]
    if isinstance(val, bool) or not isinstance(val, (int, float)) or not math.isfinite(val):
        raise ManifestError(f"{where}.{name}: expected a finite number of seconds, got {val!r}")
    return float(val)


def validate_dialogues(
    dialogues: list[Dialogue],
    allowed: frozenset[str],
    check_audio: bool = True,
    origin: Path | str = "<memory>",
    unread_sessions: Iterable[str] = (),
) -> None:
    """Check labels, audio presence, id uniqueness, and times by the one rule of corpus/turn_times.py.

    Errors name `origin:line` (line = the dialogue's position, 1-based) and the field. The audio of
    `unread_sessions`' dialogues is not opened (their times are checked as without audio).
    """
    unread_sessions = frozenset(unread_sessions)
    seen_dialogues: dict[str, int] = {}
    seen_utts: dict[str, int] = {}
    for lineno, d in enumerate(dialogues, start=1):
        where = f"{origin}:{lineno}"
        if d.dialogue_id in seen_dialogues:
            raise ManifestError(
                f"{where}: field dialogue_id: duplicate id {d.dialogue_id!r} (first on line {seen_dialogues[d.dialogue_id]})"
            )
        seen_dialogues[d.dialogue_id] = lineno
        if not d.utterances:
            raise ManifestError(f"{where}: field utterances: dialogue {d.dialogue_id!r} has no utterances")
        duration = None
        audio = check_audio and d.session not in unread_sessions
        if d.audio is not None and audio:
            duration = _audio_duration(d.audio, f"{where}: field audio")
        for i, u in enumerate(d.utterances):
            uw = f"{where}: utterances[{i}]"
            if u.id in seen_utts:
                raise ManifestError(f"{uw}.id: duplicate utterance id {u.id!r} (first on line {seen_utts[u.id]})")
            seen_utts[u.id] = lineno
            if u.emotion is not None and u.emotion not in allowed:
                raise ManifestError(
                    f"{uw}.emotion: unknown label {u.emotion!r} (allowed: {', '.join(sorted(allowed))}, or null)"
                )
            if u.audio is not None and audio:
                _audio_duration(u.audio, f"{uw}.audio")
            if u.audio is None and d.audio is None:
                raise ManifestError(f"{uw}.audio: no audio for utterance {u.id!r} and none for its dialogue")
        utts = d.utterances
        check_turn_times(utts, lambda i, name: f"{where}: utterances[{i}].{name}",
                         lambda i: f"utterances[{i}] {utts[i].id!r}", duration, d.audio)


def _audio_duration(path: Path, where: str) -> float:
    from convmem.audio.io import audio_info  # local: keeps manifest import light
    from convmem.errors import AudioError

    if not Path(path).exists():
        raise ManifestError(f"{where}: audio file not found: {path}")
    try:
        return audio_info(path).duration
    except AudioError as exc:
        raise ManifestError(f"{where}: {exc}") from None
