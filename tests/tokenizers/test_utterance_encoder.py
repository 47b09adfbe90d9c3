"""The one utterance encoder: the offline pass (whole dialogues, cached) and the live one
(utterance by utterance) give a model the same inputs."""

from __future__ import annotations

import numpy as np
import pytest

from convmem.audio.io import write_wav
from convmem.corpus.types import Dialogue, Utterance
from convmem.tokenizers import CodeCache, UtteranceEncoder, build_tokenizer, utterance_waveform

from .conftest import speechlike


@pytest.fixture(scope="module")
def kmeans():
    return build_tokenizer("kmeans", codebook_size=8, seed=0).fit([speechlike(2.0, seed=s) for s in range(2)])


@pytest.fixture(scope="module")
def dialogue(tmp_path_factory):
    """Five turns of two speakers A (quiet, low) and B (loud, high), slices of one dialogue wav."""
    root = tmp_path_factory.mktemp("enc")
    turns = [speechlike(1.2, seed=s, gain=0.05 if s % 2 == 0 else 0.4) for s in range(5)]
    whole = write_wav(root / "d.wav", np.concatenate(turns))
    t, utts = 0.0, []
    for i, w in enumerate(turns):
        utts.append(Utterance(f"u{i}", "A" if i % 2 == 0 else "B", t, t + w.size / 16000))
        t += w.size / 16000
    return Dialogue("d", "S1", utts, audio=whole)


def _live(encoder, dialogue, speakers=True):
    live = encoder.conversation()
    return [live.encode(utterance_waveform(u, dialogue), u.speaker if speakers else None) for u in dialogue.utterances]


def _same(a, b):
    assert np.array_equal(a.codes, b.codes) and a.codes.dtype == b.codes.dtype == np.int64
    assert (a.marks is None) == (b.marks is None)
    if a.marks is not None:
        assert np.array_equal(a.marks, b.marks)


@pytest.mark.parametrize("marks", [False, True])
def test_offline_equals_live_and_the_cache_changes_nothing(tmp_path, kmeans, dialogue, marks):
    enc = UtteranceEncoder(kmeans, prosody_marks=marks, cache=CodeCache(tmp_path))
    first = enc.dialogues([dialogue], progress=False)
    again = enc.dialogues([dialogue], progress=False)  # every code and turn prosody from the cache
    assert enc.cache.hits > 0
    live = _live(UtteranceEncoder(kmeans, prosody_marks=marks), dialogue)
    for u, x in zip(dialogue.utterances, live):
        _same(first[u.id], x)
        _same(again[u.id], x)
        assert (x.marks is not None) == marks and x.frames is None


def test_marks_are_speaker_relative(kmeans, dialogue):
    """Each speaker's first turn has no reference (unknown bins); with one shared speaker the
    second turn already has one, so the marks differ from the per-speaker ones."""
    from convmem.audio.relative_prosody import UNKNOWN

    enc = UtteranceEncoder(kmeans, prosody_marks=True)
    per_speaker = _live(enc, dialogue)
    shared = _live(enc, dialogue, speakers=False)
    assert (per_speaker[0].marks == UNKNOWN).all() and (per_speaker[1].marks == UNKNOWN).all()
    assert not (shared[1].marks == UNKNOWN).all()
    assert any(not np.array_equal(a.marks, b.marks) for a, b in zip(per_speaker, shared))


class _Alternating:
    """An online speaker assigner that names turns spk1, spk2, spk1, ... (records the embeddings
    and the utterance lengths in seconds)."""

    def __init__(self):
        self.seen = []
        self.seconds = []

    def assign(self, embedding, seconds):
        self.seen.append(np.asarray(embedding))
        self.seconds.append(seconds)
        return f"spk{len(self.seen) % 2 or 2}"


def test_a_live_conversation_names_unnamed_speakers_and_marks_against_them(kmeans, dialogue):
    enc = UtteranceEncoder(kmeans, prosody_marks=True)
    assigner = _Alternating()
    live = enc.conversation(assigner)
    got = [live.encode(utterance_waveform(u, dialogue)) for u in dialogue.utterances]
    assert [g.speaker for g in got] == ["spk1", "spk2", "spk1", "spk2", "spk1"]
    assert len(assigner.seen) == 5 and assigner.seen[0].shape == (256,)
    assert assigner.seconds == pytest.approx([utterance_waveform(u, dialogue).size / 16000 for u in dialogue.utterances])
    for g, x in zip(got, _live(enc, dialogue)):  # spk1/spk2 are A/B's turns: the same marks
        _same(g, x)
    given = live.encode(utterance_waveform(dialogue.utterances[0], dialogue), "C")
    assert given.speaker == "C" and len(assigner.seen) == 5  # a given speaker is not re-assigned


def test_model_input_holds_codes_then_marks(tmp_path, dialogue):
    from convmem.bundle import load_bundle
    from tests.model_fixture import tiny_bundle

    bundle = load_bundle(tiny_bundle(tmp_path, prosody_marks=True))
    table = bundle.encoder(CodeCache(tmp_path / "c")).dialogues([dialogue], progress=False)
    x = table["u1"].model_input(bundle.vocab)
    assert x.frames is None and x.ids.numel() == table["u1"].codes.size + 4
    assert (x.ids[-4:] >= bundle.vocab.mark_offset).all() and (x.ids[:-4] < bundle.vocab.mark_offset).all()


def test_frames_offline_equal_live(dialogue):
    """A frames model (whisper-kmeans, tiny.en): offline frames are batched, live ones one at a time."""
    tok = build_tokenizer("whisper-kmeans", model="tiny.en", codebook_size=16, seed=0).fit(
        [speechlike(2.0, seed=s) for s in range(4)])
    offline = UtteranceEncoder(tok, frames=True).dialogues([dialogue], progress=False)
    for u, x in zip(dialogue.utterances, _live(UtteranceEncoder(tok, frames=True), dialogue)):
        _same(offline[u.id], x)
        assert x.frames.shape == (x.codes.size, 384) and x.frames.dtype == np.float32
        np.testing.assert_allclose(offline[u.id].frames, x.frames, rtol=0, atol=1e-4)
