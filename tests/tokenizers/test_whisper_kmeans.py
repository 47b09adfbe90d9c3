"""`whisper-kmeans`: packaged Whisper encoder codes, fingerprint, save/load, feature store, code cache."""

from __future__ import annotations

import json

import numpy as np
import pytest

from convmem.errors import ConfigError
from convmem.tokenizers import CodeCache, SpeechTokenizer, build_tokenizer, load_tokenizer
from convmem.tokenizers.whisper_kmeans import WhisperFeatureStore

from .conftest import speechlike

OPTIONS = dict(model="tiny.en", codebook_size=16, seed=0)  # layer: the middle one, 2


@pytest.fixture
def own_cache(tmp_path):
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def train_waves():
    return [speechlike(2.0, seed=s) for s in range(4)]


@pytest.fixture(scope="module")
def fitted(train_waves):
    return build_tokenizer("whisper-kmeans", **OPTIONS).fit(train_waves)


def test_ten_seconds_give_250_codes_in_range(fitted):
    assert isinstance(fitted, SpeechTokenizer) and fitted.kind == "whisper-kmeans"
    codes = fitted.encode(speechlike(10.0, seed=9), 16000)
    assert codes.shape == (250,) and codes.dtype == np.int64
    assert 0 <= codes.min() and codes.max() < 16 and len(set(codes.tolist())) > 2
    assert fitted.encode(speechlike(10.0, seed=9)[::2].copy(), 8000).shape == (250,)


def test_fit_is_deterministic_and_save_load_round_trips(fitted, train_waves, tmp_path):
    again = build_tokenizer("whisper-kmeans", **OPTIONS).fit(train_waves)
    assert again.fingerprint == fitted.fingerprint
    fitted.save(tmp_path / "tok")
    loaded = load_tokenizer(tmp_path / "tok")
    wave = speechlike(3.0, seed=7)
    assert loaded.fingerprint == fitted.fingerprint
    np.testing.assert_array_equal(loaded.encode(wave), fitted.encode(wave))
    meta = json.loads((tmp_path / "tok" / "tokenizer.json").read_text())
    assert meta["kind"] == "whisper-kmeans" and meta["config"]["layer"] == 2 and len(meta["weights_sha256"]) == 64


def test_fingerprint_covers_weights_layer_and_codebook(fitted, train_waves, tmp_path):
    other_layer = build_tokenizer("whisper-kmeans", **{**OPTIONS, "layer": 1}).fit(train_waves)
    other_book = build_tokenizer("whisper-kmeans", **{**OPTIONS, "seed": 1}).fit(train_waves)
    assert len({fitted.fingerprint, other_layer.fingerprint, other_book.fingerprint}) == 3
    fitted.save(tmp_path / "tok")
    meta_path = tmp_path / "tok" / "tokenizer.json"
    meta = json.loads(meta_path.read_text())
    meta["weights_sha256"] = "0" * 64
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="fitted on Whisper weights '0000.*refit"):
        load_tokenizer(tmp_path / "tok")


def test_features_are_kept_only_beside_a_code_cache_and_give_the_same_codes(fitted, own_cache, monkeypatch):
    wave = speechlike(2.5, seed=11)
    fitted.cache_features_in(None)
    first = fitted.encode(wave)  # no code cache: nothing written (predict, serve)
    assert not own_cache.exists()
    cache = CodeCache(own_cache / "codes")
    np.testing.assert_array_equal(cache.encode(fitted, wave), first)
    stored = list((own_cache / "codes" / "features").rglob("*.npy"))
    assert len(stored) == 1 and fitted.caches_features

    def no_encoder(*args, **kwargs):
        raise AssertionError("the stored features should have been used")

    with monkeypatch.context() as m:
        m.setattr(fitted.encoder, "features", no_encoder)
        np.testing.assert_array_equal(fitted.encode(wave), first)
    stored[0].write_bytes(b"damaged")
    with pytest.warns(UserWarning, match="running the encoder again"):
        np.testing.assert_array_equal(fitted.encode(wave), first)
    fitted.cache_features_in(None)


def test_store_keys_by_model_layer_and_content(own_cache):
    a, b = WhisperFeatureStore("tiny.en", 2, own_cache), WhisperFeatureStore("tiny.en", 3, own_cache)
    wave = speechlike(1.0, seed=1)
    a.put(wave, np.ones((25, 384), np.float32))
    assert a.get(wave, 384) is not None and a.get(wave, 384).dtype == np.float16
    assert b.get(wave, 384) is None
    assert a.get(speechlike(1.0, seed=2), 384) is None
    with pytest.warns(UserWarning, match="wrong shape"):
        assert a.get(wave, 512) is None


def test_the_code_cache_works_as_for_every_tokenizer(fitted, tmp_path):
    cache = CodeCache(tmp_path / "codes")
    wave = speechlike(1.5, seed=5)
    codes = cache.encode(fitted, wave)
    assert (cache.hits, cache.misses) == (0, 1)
    np.testing.assert_array_equal(cache.encode(fitted, wave), codes)
    assert (cache.hits, cache.misses) == (1, 1)


def test_the_default_layer_is_the_middle_block():
    assert build_tokenizer("whisper-kmeans").config.layer == 3  # base: 6 blocks
    assert build_tokenizer("whisper-kmeans", model="tiny.en").config.layer == 2
    assert build_tokenizer("whisper-kmeans", layer=-1).config.layer == -1


def test_config_errors():
    with pytest.raises(ConfigError, match="unknown Whisper model 'small'"):
        build_tokenizer("whisper-kmeans", model="small")
    with pytest.raises(ConfigError, match="unknown key"):
        build_tokenizer("whisper-kmeans", encoder_dir="x")
    with pytest.raises(ConfigError, match="not fitted"):
        build_tokenizer("whisper-kmeans", model="tiny.en").encode(speechlike(1.0))



def test_frames_are_what_the_codes_are_assigned_from(fitted):
    from convmem.tokenizers.base import offers_frames

    assert offers_frames(fitted)
    waves = [speechlike(1.3, seed=21), speechlike(2.0, seed=22)]
    frames = fitted.frames_batch(waves)
    for wave, f in zip(waves, frames):
        codes = fitted.encode(wave)
        assert f.dtype == np.float32 and f.shape == (codes.size, fitted.encoder.hidden_size)
        np.testing.assert_array_equal(fitted.codebook.assign(f), codes)
    np.testing.assert_array_equal(fitted.frames(waves[0]), frames[0])
    # any sample rate, like encode
    assert fitted.frames(waves[1][::2].copy(), 8000).shape == frames[1].shape


def test_a_live_turn_read_as_codes_then_frames_runs_the_encoder_once(fitted, monkeypatch):
    fitted.cache_features_in(None)  # predict/serve: no store
    calls = []
    real = fitted.encoder.features
    monkeypatch.setattr(fitted.encoder, "features", lambda waves, *a, **k: calls.append(len(waves)) or real(waves, *a, **k))
    wave = speechlike(1.7, seed=21)
    codes = fitted.encode(wave)
    frames = fitted.frames(wave)
    assert calls == [1] and frames.shape == (codes.size, fitted.encoder.hidden_size)
    np.testing.assert_array_equal(fitted.codebook.assign(frames), codes)
