from __future__ import annotations

import numpy as np
import pytest

from convmem.audio.io import load_audio, write_wav
from convmem.corpus.types import Dialogue, Utterance
from convmem.errors import AudioError, ConfigError, ManifestError
from convmem.tokenizers import CodeCache, build_tokenizer, encode_dialogues, encode_utterance, fit_on_dialogues

from .conftest import speechlike


class Counting:
    """Wraps a tokenizer and counts encode calls (to see the cache at work)."""

    def __init__(self, inner):
        self.inner, self.calls = inner, 0
        self.kind, self.frame_rate, self.codebook_size = inner.kind, inner.frame_rate, inner.codebook_size

    @property
    def fingerprint(self):
        return self.inner.fingerprint

    def encode(self, wave, sample_rate=16000):
        self.calls += 1
        return self.inner.encode(wave, sample_rate)


class Recording:
    """A 'trainable tokenizer' that only records what it was fitted on."""

    kind = "recording"

    def fit(self, waveforms, sample_rate=16000):
        self.seen = [np.asarray(w) for w in waveforms]
        return self


@pytest.fixture(scope="module")
def kmeans():
    return build_tokenizer("kmeans", codebook_size=8, seed=0).fit([speechlike(2.0, seed=s) for s in range(2)])


def make_dialogues(root, n_sessions=2, seconds=4.0):
    """Per session one dialogue: a whole-dialogue wav; two turns are slices, the last has its own file."""
    dialogues = []
    for s in range(n_sessions):
        whole = write_wav(root / f"s{s}.wav", speechlike(seconds, seed=10 + s, gain=0.1 * (s + 1)))
        own = write_wav(root / f"s{s}_own.wav", speechlike(1.0, seed=20 + s, gain=0.1 * (s + 1)))
        utts = [
            Utterance(f"s{s}_u0", "A", 0.0, 1.5),
            Utterance(f"s{s}_u1", "B", 1.5, seconds - 1.0),
            Utterance(f"s{s}_u2", "A", seconds - 1.0, seconds, audio=own),
        ]
        dialogues.append(Dialogue(f"d{s}", f"Ses{s}", utts, audio=whole))
    return dialogues


def test_utterance_audio_is_its_file_or_its_slice(tmp_path, kmeans):
    d = make_dialogues(tmp_path, 1)[0]
    sliced = encode_utterance(kmeans, d.utterances[1], d)
    assert sliced.shape == (38,)  # 1.5 s -> 37.5 frames -> rounded half up
    assert np.array_equal(sliced, kmeans.encode(load_audio(d.audio, start=1.5, end=3.0), 16000))
    own = encode_utterance(kmeans, d.utterances[2], d)
    assert own.shape == (25,)
    bare = Dialogue("d9", "Ses9", [Utterance("x", "A", 0.0, 1.0)])
    with pytest.raises(AudioError, match="dialogue d9, utterance x: no audio"):
        encode_utterance(kmeans, bare.utterances[0], bare)


def test_second_run_hits_the_cache(tmp_path, kmeans):
    dialogues = make_dialogues(tmp_path)
    tok, cache = Counting(kmeans), CodeCache(tmp_path / "cache")
    first = encode_dialogues(tok, dialogues, cache, progress=False)
    assert tok.calls == 6 and cache.misses == 6 and cache.hits == 0
    again, cache2 = Counting(kmeans), CodeCache(tmp_path / "cache")
    second = encode_dialogues(again, dialogues, cache2, progress=False)
    assert again.calls == 0 and cache2.hits == 6
    assert first.keys() == second.keys() and all(np.array_equal(first[k], second[k]) for k in first)
    files = list((tmp_path / "cache" / kmeans.fingerprint[:16]).glob("*.npy"))
    assert len(files) == 6


def test_changed_audio_or_tokenizer_invalidates(tmp_path, kmeans):
    dialogues = make_dialogues(tmp_path)
    encode_dialogues(kmeans, dialogues, CodeCache(tmp_path / "cache"), progress=False)
    write_wav(tmp_path / "s0_own.wav", speechlike(1.0, seed=99, gain=0.1))  # same path, new content
    tok, cache = Counting(kmeans), CodeCache(tmp_path / "cache")
    encode_dialogues(tok, dialogues, cache, progress=False)
    assert tok.calls == 1 and cache.hits == 5
    other = Counting(build_tokenizer("kmeans", codebook_size=8, seed=1).fit([speechlike(2.0, seed=0)]))
    cache = CodeCache(tmp_path / "cache")
    encode_dialogues(other, dialogues, cache, progress=False)
    assert other.calls == 6 and cache.hits == 0


def test_damaged_entry_is_recomputed(tmp_path, kmeans):
    d = make_dialogues(tmp_path, 1)
    cache = CodeCache(tmp_path / "cache")
    first = encode_dialogues(kmeans, d, cache, progress=False)
    for f in (tmp_path / "cache").rglob("*.npy"):
        f.write_bytes(b"garbage")
    tok, cache = Counting(kmeans), CodeCache(tmp_path / "cache")
    with pytest.warns(UserWarning, match="unreadable cache entry"):
        again = encode_dialogues(tok, d, cache, progress=False)
    assert tok.calls == 3 and all(np.array_equal(first[k], again[k]) for k in first)


def test_duplicate_utterance_ids_are_refused(tmp_path, kmeans):
    d = make_dialogues(tmp_path, 1)[0]
    d.utterances[1].id = d.utterances[0].id
    with pytest.raises(ManifestError, match="utterance id 's0_u0' occurs twice"):
        encode_dialogues(kmeans, [d], None, progress=False)


def test_fit_on_dialogues_reads_only_the_training_sessions(tmp_path):
    dialogues = make_dialogues(tmp_path, n_sessions=3)
    rec = fit_on_dialogues(Recording(), dialogues, ["Ses0", "Ses2"], progress=False)
    expected = [load_audio(tmp_path / "s0.wav", start=0.0, end=1.5), load_audio(tmp_path / "s0.wav", start=1.5, end=3.0),
                load_audio(tmp_path / "s0_own.wav")]
    assert len(rec.seen) == 6
    assert all(np.array_equal(a, b) for a, b in zip(rec.seen[:3], expected))
    held_out = {load_audio(tmp_path / "s1_own.wav").tobytes(), load_audio(tmp_path / "s1.wav", 16000, 0.0, 1.5).tobytes()}
    assert not held_out & {w.tobytes() for w in rec.seen}


def test_fit_on_dialogues_changes_with_the_sessions(tmp_path):
    dialogues = make_dialogues(tmp_path, n_sessions=2, seconds=6.0)
    a = fit_on_dialogues(build_tokenizer("kmeans", codebook_size=8), dialogues, ["Ses0"], progress=False)
    b = fit_on_dialogues(build_tokenizer("kmeans", codebook_size=8), dialogues, ["Ses0", "Ses1"], progress=False)
    assert a.fingerprint != b.fingerprint


def test_fit_on_dialogues_errors(tmp_path, kmeans):
    dialogues = make_dialogues(tmp_path, 1)
    with pytest.raises(ConfigError, match="no training sessions"):
        fit_on_dialogues(Recording(), dialogues, [])
    with pytest.raises(ConfigError, match=r"session\(s\) \['Ses7'\] not found"):
        fit_on_dialogues(Recording(), dialogues, ["Ses0", "Ses7"])
    with pytest.raises(ConfigError, match="nothing to fit"):
        fit_on_dialogues(Counting(kmeans), dialogues, ["Ses0"])


def test_perturbed_copies_are_new_voices_of_the_same_turns_and_are_cached(tmp_path, kmeans):
    from convmem.audio.augment import SpeakerAugmentConfig
    from convmem.tokenizers.dialogue_audio import encode_perturbed_copies

    dialogues = make_dialogues(tmp_path)
    cfg = SpeakerAugmentConfig(copies=2, speed=0.2, gain_db=6.0)
    assert encode_perturbed_copies(kmeans, dialogues, SpeakerAugmentConfig(copies=0), progress=False) == []
    tok, cache = Counting(kmeans), CodeCache(tmp_path / "cache")
    copies = encode_perturbed_copies(tok, dialogues, cfg, cache, progress=False)
    assert [cid for cid, _, _, _ in copies] == ["d0#aug1", "d0#aug2", "d1#aug1", "d1#aug2"]
    assert [src.dialogue_id for _, src, _, _ in copies] == ["d0", "d0", "d1", "d1"]
    assert all(marks is None for *_, marks in copies)
    original = encode_dialogues(kmeans, dialogues, progress=False)
    for cid, _, codes, _ in copies:
        assert list(codes) == [u.id for u in dialogues[int(cid[1])].utterances]
        for uid, c in codes.items():
            # the duration changes by the speaker's speed factor, so the codes are new audio
            assert abs(c.size - original[uid].size) <= 0.25 * original[uid].size + 1
        assert any(not np.array_equal(c, original[u]) for u, c in codes.items())
    assert tok.calls == 12 and cache.misses == 12
    again = encode_perturbed_copies(tok, dialogues, cfg, cache, progress=False)
    assert tok.calls == 12 and cache.hits == 12
    assert all(np.array_equal(a[2][u], b[2][u]) for a, b in zip(copies, again) for u in a[2])


def test_prosody_marks_compare_turns_within_their_dialogue_and_speaker(tmp_path, kmeans):
    from convmem.audio.augment import SpeakerAugmentConfig
    from convmem.audio.relative_prosody import UNKNOWN, conversation_marks, turn_prosody
    from convmem.tokenizers.dialogue_audio import encode_perturbed_copies, measure_marks, utterance_waveform

    dialogues = make_dialogues(tmp_path)
    marks = measure_marks(dialogues, progress=False)
    assert list(marks) == [u.id for d in dialogues for u in d.utterances]
    for d in dialogues:  # each dialogue starts afresh: A's and B's first turns have no reference
        first_a, first_b, second_a = (marks[u.id] for u in d.utterances)
        assert (first_a == UNKNOWN).all() and (first_b == UNKNOWN).all()
        assert second_a[2] != UNKNOWN  # A's level against A's first turn
        want = conversation_marks([u.speaker for u in d.utterances],
                                  [turn_prosody(utterance_waveform(u, d)) for u in d.utterances])
        assert all(np.array_equal(marks[u.id], w) for u, w in zip(d.utterances, want))
    cfg = SpeakerAugmentConfig(copies=1, speed=0.2, gain_db=6.0)
    for _, source, codes, copy_marks in encode_perturbed_copies(kmeans, dialogues, cfg, progress=False, marks=True):
        assert list(copy_marks) == list(codes) == [u.id for u in source.utterances]
        assert (copy_marks[source.utterances[0].id] == UNKNOWN).all()


def test_turn_prosody_is_cached_by_content(tmp_path):
    from convmem.tokenizers.cache import PROSODY_VERSION
    from convmem.tokenizers.dialogue_audio import measure_marks

    dialogues = make_dialogues(tmp_path)
    cache = CodeCache(tmp_path / "cache")
    first = measure_marks(dialogues, progress=False, cache=cache)
    assert (cache.hits, cache.misses) == (0, 6)
    again = measure_marks(dialogues, progress=False, cache=cache)
    assert (cache.hits, cache.misses) == (6, 6)
    assert all(np.array_equal(first[u], again[u]) for u in first)
    assert all(np.array_equal(first[u], m) for u, m in measure_marks(dialogues, progress=False).items())
    entry = next((tmp_path / "cache" / PROSODY_VERSION[:16]).glob("*.npy"))
    entry.write_bytes(b"not an array")
    with pytest.warns(UserWarning, match="unreadable cache entry"):
        measure_marks(dialogues, progress=False, cache=cache)
    assert cache.misses == 7


class WithFrames:
    """A tokenizer that offers frames: its kmeans features (so frames and codes line up)."""

    def __init__(self, inner):
        self.inner, self.kind, self.batches = inner, "with-frames", []

    def frames_batch(self, waves, sample_rate=16000):
        self.batches.append(len(waves))
        return [self.inner.features(w) for w in waves]

    def frames(self, wave, sample_rate=16000):
        return self.frames_batch([wave])[0]


def test_frames_of_dialogues_and_of_perturbed_copies_line_up_with_their_codes(tmp_path, kmeans):
    from convmem.audio.augment import SpeakerAugmentConfig
    from convmem.tokenizers.base import offers_frames, require_frames
    from convmem.tokenizers.dialogue_audio import dialogue_frames, encode_perturbed_copies, perturbed_copy_frames

    dialogues = make_dialogues(tmp_path)
    tok = WithFrames(kmeans)
    assert offers_frames(tok) and not offers_frames(kmeans)
    frames = dialogue_frames(tok, dialogues, progress=False)
    codes = encode_dialogues(kmeans, dialogues, progress=False)
    assert list(frames) == list(codes) and tok.batches == [6]  # batched
    for uid, f in frames.items():
        assert f.dtype == np.float32 and f.shape[0] == codes[uid].size
    cfg = SpeakerAugmentConfig(copies=2, speed=0.2, gain_db=6.0)
    copies = encode_perturbed_copies(kmeans, dialogues, cfg, progress=False)
    copy_frames = perturbed_copy_frames(tok, dialogues, cfg)
    assert len(copy_frames) == len(copies)
    for (_, _, c, _), f in zip(copies, copy_frames):
        assert list(f) == list(c) and all(f[u].shape[0] == c[u].size for u in c)
    with pytest.raises(ConfigError, match="'kmeans' offers codes only.*whisper-kmeans"):
        require_frames("kmeans")
    require_frames("whisper-kmeans")
