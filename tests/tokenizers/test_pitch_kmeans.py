from __future__ import annotations

import numpy as np
import pytest

from convmem.errors import ConfigError
from convmem.tokenizers import SpeechTokenizer, build_tokenizer, load_tokenizer
from convmem.tokenizers.frame_prosody import code_log_f0
from convmem.tokenizers.pitch_kmeans import PITCH_FILE, PitchKMeansTokenizer

from .conftest import speechlike, voice


@pytest.fixture(scope="module")
def fitted():
    return build_tokenizer("kmeans-f0", spectral_size=8, pitch_bins=3, seed=1).fit(
        [speechlike(4.0, seed=s) for s in range(4)])


def test_ten_seconds_give_250_codes_in_range(fitted):
    codes = fitted.encode(speechlike(10.0, seed=9), 16000)
    assert codes.shape == (250,) and codes.dtype == np.int64
    assert fitted.codebook_size == 8 * 4 and isinstance(fitted, SpeechTokenizer)
    assert 0 <= codes.min() and codes.max() < fitted.codebook_size
    # the gliding f0 of the speech-like voice visits more than one voiced pitch level
    assert len(set((codes % 4).tolist()) - {0}) >= 2
    assert fitted.encode(speechlike(10.0, seed=9, sr=48000), 48000).shape == (250,)


def test_deterministic_and_save_load_round_trip(tmp_path, fitted):
    again = build_tokenizer("kmeans-f0", spectral_size=8, pitch_bins=3, seed=1).fit(
        [speechlike(4.0, seed=s) for s in range(4)])
    wave = speechlike(3.0, seed=7)
    assert again.fingerprint == fitted.fingerprint
    assert np.array_equal(again.encode(wave, 16000), fitted.encode(wave, 16000))
    fitted.save(tmp_path / "tok")
    loaded = load_tokenizer(tmp_path / "tok")
    assert isinstance(loaded, PitchKMeansTokenizer) and loaded.fingerprint == fitted.fingerprint
    assert np.array_equal(loaded.encode(wave, 16000), fitted.encode(wave, 16000))


def test_pitch_level_follows_f0_and_silence_is_unvoiced():
    tok = build_tokenizer("kmeans-f0", spectral_size=4, pitch_bins=2, seed=0).fit([voice(110), voice(220)])
    low, high = tok.encode(voice(110, seed=3), 16000) % 3, tok.encode(voice(220, seed=3), 16000) % 3
    # steady voices: one level each (ignore the edge frames the pitch tracker cannot fill)
    assert set(low[3:-3].tolist()) == {1} and set(high[3:-3].tolist()) == {2}
    silence = np.zeros(16000, dtype=np.float32)
    assert set((tok.encode(silence, 16000) % 3).tolist()) == {0}
    f0 = code_log_f0(voice(220), 50)
    assert np.nanmedian(f0) == pytest.approx(np.log2(220), abs=0.02)


def test_errors(tmp_path, fitted):
    with pytest.raises(ConfigError, match="not fitted"):
        build_tokenizer("kmeans-f0").encode(speechlike(1.0), 16000)
    with pytest.raises(ConfigError, match="unknown key"):
        build_tokenizer("kmeans-f0", codebook_size=8)
    noise = np.random.default_rng(0).standard_normal(32000).astype(np.float32) * 0.1
    with pytest.raises(ConfigError, match="voiced frames"):
        build_tokenizer("kmeans-f0", spectral_size=4, pitch_bins=3).fit([noise])
    fitted.save(tmp_path / "tok")
    np.save(tmp_path / "tok" / PITCH_FILE, np.zeros(5))
    with pytest.raises(ConfigError, match="bin edges"):
        load_tokenizer(tmp_path / "tok")
