from __future__ import annotations

import numpy as np
import pytest

from convmem.errors import ConfigError
from convmem.tokenizers import SpeechTokenizer, build_tokenizer, load_tokenizer
from convmem.tokenizers.kmeans import FrameSampler, LogMelKMeansTokenizer

from .conftest import speechlike


@pytest.fixture(scope="module")
def train_waves():
    return [speechlike(4.0, seed=s) for s in range(5)]


@pytest.fixture(scope="module")
def fitted(train_waves):
    return build_tokenizer("kmeans", codebook_size=32, seed=1).fit(train_waves)


def test_ten_seconds_give_250_codes_in_range(fitted):
    codes = fitted.encode(speechlike(10.0, seed=9), 16000)
    assert codes.shape == (250,) and codes.dtype == np.int64
    assert 0 <= codes.min() and codes.max() < 32
    assert len(np.unique(codes)) > 4  # speech-like audio uses many codes, not one
    assert fitted.frame_rate == 25.0 and fitted.codebook_size == 32
    assert isinstance(fitted, SpeechTokenizer)


def test_other_sample_rates_and_tiny_audio(fitted):
    assert fitted.encode(speechlike(10.0, seed=9, sr=48000), 48000).shape == (250,)
    assert fitted.encode(speechlike(10.0, seed=9, sr=22050), 22050).shape == (250,)
    assert fitted.encode(speechlike(0.005, seed=9), 16000).shape == (1,)


def test_fit_is_deterministic(train_waves, fitted):
    again = build_tokenizer("kmeans", codebook_size=32, seed=1).fit(train_waves)
    wave = speechlike(3.0, seed=7)
    assert again.fingerprint == fitted.fingerprint
    assert np.array_equal(again.encode(wave, 16000), fitted.encode(wave, 16000))
    other_seed = build_tokenizer("kmeans", codebook_size=32, seed=2).fit(train_waves)
    assert other_seed.fingerprint != fitted.fingerprint


def test_save_load_round_trip(tmp_path, fitted):
    fitted.save(tmp_path / "tok")
    loaded = load_tokenizer(tmp_path / "tok")
    assert isinstance(loaded, LogMelKMeansTokenizer)
    assert loaded.fingerprint == fitted.fingerprint
    wave = speechlike(5.0, seed=11)
    assert np.array_equal(loaded.encode(wave, 16000), fitted.encode(wave, 16000))


def test_two_tones_split_into_two_codes():
    t = np.arange(32000) / 16000
    low = (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)
    high = (0.3 * np.sin(2 * np.pi * 3000 * t)).astype(np.float32)
    tok = build_tokenizer("kmeans", codebook_size=2, seed=0).fit([low, high])
    codes = tok.encode(np.concatenate([low, high]), 16000)
    assert codes.shape == (100,)
    # steady tones: one code per tone, apart from the frames at the edges and at the joint
    assert len(set(codes[2:48])) == 1 and len(set(codes[52:98])) == 1 and codes[10] != codes[90]


def test_louder_audio_changes_codes():
    """Loudness is kept (no per-utterance normalisation): the same voice 4x louder maps elsewhere."""
    quiet = [speechlike(3.0, seed=s, gain=0.05) for s in range(3)]
    loud = [speechlike(3.0, seed=s, gain=0.2) for s in range(3)]
    tok = build_tokenizer("kmeans", codebook_size=16, seed=0).fit(quiet + loud)
    q, lo = tok.encode(quiet[0], 16000), tok.encode(loud[0], 16000)
    assert len(set(q) & set(lo)) < len(set(q)) / 2


def test_errors():
    tok = build_tokenizer("kmeans", codebook_size=64)
    with pytest.raises(ConfigError, match="not fitted"):
        tok.encode(speechlike(1.0), 16000)
    with pytest.raises(ConfigError, match=r"only 25 frames .* to fit 64 clusters"):
        tok.fit([speechlike(1.0)])


def test_frame_sampler_is_uniform_capped_and_seeded():
    blocks = [np.full((100, 1), i, dtype=np.float32) for i in range(20)]

    def run(seed):
        sampler = FrameSampler(cap=150, seed=seed)
        for b in blocks:
            sampler.add(b)
        return sampler.sample()[:, 0]

    a = run(0)
    assert a.shape == (150,) and np.array_equal(a, run(0)) and not np.array_equal(a, run(1))
    counts = np.bincount(a.astype(int), minlength=20)
    assert counts[:10].sum() > 40 and counts[10:].sum() > 40  # early blocks are not crowded out


def test_utterance_cmn_removes_loudness_and_keeps_old_fingerprints():
    quiet = [speechlike(3.0, seed=s, gain=0.05) for s in range(3)]
    loud = [speechlike(3.0, seed=s, gain=0.2) for s in range(3)]
    tok = build_tokenizer("kmeans", codebook_size=16, seed=0, utterance_cmn=True).fit(quiet + loud)
    # the same voice 4x louder: identical log-mel after the mean is removed (up to the noise floor)
    q, lo = tok.encode(quiet[0], 16000), tok.encode(loud[0], 16000)
    assert np.mean(q == lo) > 0.9
    plain = build_tokenizer("kmeans", codebook_size=16, seed=0).fit(quiet + loud)
    explicit = build_tokenizer("kmeans", codebook_size=16, seed=0, utterance_cmn=False).fit(quiet + loud)
    assert plain.fingerprint == explicit.fingerprint != tok.fingerprint


def test_prosody_columns_put_level_and_pitch_back_into_cmn_codes(tmp_path):
    from .conftest import voice

    # the same voice quiet and loud, low and high: CMN alone cannot tell quiet from loud
    waves = {(g, f): g * voice(f, seconds=3.0, seed=int(f)) for g in (0.2, 1.0) for f in (110, 220)}
    cmn = build_tokenizer("kmeans", codebook_size=8, seed=0, utterance_cmn=True).fit(list(waves.values()))
    pro = build_tokenizer("kmeans", codebook_size=8, seed=0, utterance_cmn=True, prosody_weight=1).fit(
        list(waves.values()))
    assert pro.features(waves[(1.0, 110)]).shape == (75, 83)
    mid = slice(5, -5)

    def codes(tok, key):
        return set(tok.encode(waves[key], 16000)[mid].tolist())

    assert codes(cmn, (0.2, 110)) == codes(cmn, (1.0, 110))  # loudness is gone with CMN
    assert not codes(pro, (0.2, 110)) & codes(pro, (1.0, 110))  # and back with the level column
    assert not codes(pro, (1.0, 110)) & codes(pro, (1.0, 220))  # an octave apart: other codes
    assert pro.encode(speechlike(10.0, seed=9), 16000).shape == (250,)
    # saved and loaded: same codes; 1 and 1.0 are one config; weight 0 is the old fingerprint
    pro.save(tmp_path / "tok")
    loaded = load_tokenizer(tmp_path / "tok")
    assert loaded.config.prosody_weight == 1.0 and loaded.fingerprint == pro.fingerprint
    assert np.array_equal(loaded.encode(waves[(0.2, 220)], 16000), pro.encode(waves[(0.2, 220)], 16000))
    zero = build_tokenizer("kmeans", codebook_size=8, seed=0, utterance_cmn=True, prosody_weight=0.0)
    assert zero.fit(list(waves.values())).fingerprint == cmn.fingerprint != pro.fingerprint
    with pytest.raises(ConfigError, match="prosody_weight"):
        build_tokenizer("kmeans", prosody_weight=-1)
