"""Conversations: Dialogue/Utterance records, the manifest, corpus loaders and splits."""

from convmem.corpus.types import EMOTIONS, EMOTIONS_7, KNOWN_LABELS, Dialogue, Utterance
from convmem.corpus.manifest import read_manifest, write_manifest

__all__ = [
    "EMOTIONS",
    "EMOTIONS_7",
    "KNOWN_LABELS",
    "Dialogue",
    "Utterance",
    "read_manifest",
    "write_manifest",
]
