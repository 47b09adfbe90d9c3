"""A corpus's identity by content: what a model directory records of the data it was trained on, so
that training resumed on other data (an edited manifest, replaced recordings, another synthetic
seed) is refused instead of silently mixing two corpora."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from convmem.corpus.types import Dialogue
from convmem.fileio import file_sha256


def corpus_sha256(dialogues: list[Dialogue]) -> str:
    """sha256 hex of the dialogues' records (ids, sessions, speakers, times, labels, text) and the
    bytes of every audio file they read (each file once, by content, not by path or date)."""
    h = hashlib.sha256()
    seen: set[Path] = set()

    def audio(path: Path | None) -> str | None:
        if path is None:
            return None
        if path not in seen:
            seen.add(path)
            h.update(bytes.fromhex(file_sha256(path)))
        return path.name

    for d in dialogues:
        record = {"dialogue": d.dialogue_id, "session": d.session, "audio": audio(d.audio),
                  "utterances": [[u.id, u.speaker, round(float(u.start), 4), round(float(u.end), 4), u.emotion,
                                  u.text, audio(u.audio)] for u in d.utterances]}
        h.update(json.dumps(record, sort_keys=True).encode())
    return h.hexdigest()
