"""ssl-kmeans on tiny randomly initialised encoders that the tests save locally (nothing downloaded)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from convmem.errors import ConfigError
from convmem.tokenizers import SpeechTokenizer, build_tokenizer, load_tokenizer

from .conftest import speechlike

TINY = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    conv_dim=(16,) * 7,  # the standard stack: strides multiply to 320 (50 Hz), receptive field 400
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=4,
)


def save_tiny_encoder(path, family: str = "hubert", normalize: bool | None = None, seed: int = 0):
    import torch
    from transformers import HubertConfig, HubertModel, Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    torch.manual_seed(seed)
    config_cls, model_cls = {"hubert": (HubertConfig, HubertModel), "wav2vec2": (Wav2Vec2Config, Wav2Vec2Model)}[family]
    model_cls(config_cls(**TINY)).save_pretrained(path)
    if normalize is not None:
        Wav2Vec2FeatureExtractor(do_normalize=normalize).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    return save_tiny_encoder(tmp_path_factory.mktemp("hubert"))


@pytest.fixture(scope="module")
def fitted(encoder_dir):
    tok = build_tokenizer("ssl-kmeans", encoder_dir=str(encoder_dir), layer=2, codebook_size=8, seed=0)
    return tok.fit([speechlike(2.0, seed=s) for s in range(3)])


def test_ten_seconds_give_250_codes(fitted):
    codes = fitted.encode(speechlike(10.0, seed=5), 16000)
    assert codes.shape == (250,) and codes.dtype == np.int64
    assert 0 <= codes.min() and codes.max() < 8 and len(np.unique(codes)) > 1
    assert isinstance(fitted, SpeechTokenizer) and fitted.frame_rate == 25.0 and fitted.codebook_size == 8
    assert fitted.encode(speechlike(0.01, seed=5), 16000).shape == (1,)


def test_deterministic_and_chunking_keeps_frame_count(encoder_dir, fitted):
    wave = speechlike(3.0, seed=6)
    again = build_tokenizer("ssl-kmeans", encoder_dir=str(encoder_dir), layer=2, codebook_size=8, seed=0)
    again.fit([speechlike(2.0, seed=s) for s in range(3)])
    assert again.fingerprint == fitted.fingerprint
    assert np.array_equal(again.encode(wave, 16000), fitted.encode(wave, 16000))
    chunked = build_tokenizer("ssl-kmeans", encoder_dir=str(encoder_dir), layer=2, codebook_size=8, max_chunk_s=1.0)
    chunked.codebook = fitted.codebook
    assert chunked.encode(speechlike(10.0, seed=5), 16000).shape == (250,)
    assert chunked.fingerprint != fitted.fingerprint  # chunking changes codes near the cuts


def test_save_load_round_trip_and_changed_encoder_is_refused(tmp_path, encoder_dir, fitted):
    fitted.save(tmp_path / "tok")
    loaded = load_tokenizer(tmp_path / "tok")
    wave = speechlike(4.0, seed=8)
    assert loaded.fingerprint == fitted.fingerprint
    assert np.array_equal(loaded.encode(wave, 16000), fitted.encode(wave, 16000))
    # the codebook belongs to these encoder weights: other weights at the same path are refused
    moved = save_tiny_encoder(tmp_path / "enc", seed=1)
    meta = json.loads((tmp_path / "tok" / "tokenizer.json").read_text())
    meta["config"]["encoder_dir"] = str(moved)
    (tmp_path / "tok" / "tokenizer.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="has changed since this codebook was fitted"):
        load_tokenizer(tmp_path / "tok")


def test_wav2vec2_with_feature_extractor(tmp_path):
    enc = save_tiny_encoder(tmp_path / "w2v", family="wav2vec2", normalize=True)
    tok = build_tokenizer("ssl-kmeans", encoder_dir=str(enc), layer=-1, codebook_size=4)
    tok.fit([speechlike(2.0, seed=1)])
    wave = speechlike(10.0, seed=2)
    assert tok.encode(wave, 16000).shape == (250,)
    # do_normalize makes the codes independent of gain, as the encoder was trained
    assert np.array_equal(tok.encode(wave, 16000), tok.encode(3 * wave, 16000))


def test_errors_name_the_problem(tmp_path, encoder_dir):
    with pytest.raises(ConfigError, match="encoder_dir' is required"):
        build_tokenizer("ssl-kmeans")
    with pytest.raises(ConfigError, match="speech encoder directory not found"):
        build_tokenizer("ssl-kmeans", encoder_dir=str(tmp_path / "nope"))
    bad_layer = build_tokenizer("ssl-kmeans", encoder_dir=str(encoder_dir), layer=7, codebook_size=4)
    with pytest.raises(ConfigError, match="layer 7 out of range"):
        bad_layer.fit([speechlike(1.0)])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no config.json"):
        build_tokenizer("ssl-kmeans", encoder_dir=str(tmp_path / "empty"), codebook_size=4).fit([speechlike(1.0)])
