"""s3: the real CosyVoice2 model when CONVMEM_S3_ONNX points at it, else a tiny ONNX built here.

The tiny model has the real graph's interface (feats float32[1, 128, T], feats_length int32[1],
codes [1, 1, T/4]) with two stride-2 convolutions and an argmax, so the real code path
(features, session, chunking, the 250-codes rule) runs without the 500 MB model.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from convmem.errors import ConfigError
from convmem.tokenizers import SpeechTokenizer, build_tokenizer, load_tokenizer
from convmem.tokenizers.s3 import ENV_VAR, S3Tokenizer

from .conftest import speechlike

TINY_CODES = 16


def build_tiny_s3(path: Path, seed: int = 0, inputs: int = 2) -> Path:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w1 = numpy_helper.from_array((rng.standard_normal((8, 128, 3)) * 0.1).astype(np.float32), "w1")
    w2 = numpy_helper.from_array((rng.standard_normal((TINY_CODES, 8, 3)) * 0.3).astype(np.float32), "w2")
    conv = dict(kernel_shape=[3], strides=[2], pads=[1, 1])
    nodes = [
        helper.make_node("Conv", ["feats", "w1"], ["h1"], **conv),
        helper.make_node("Relu", ["h1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["h2"], **conv),
        helper.make_node("ArgMax", ["h2"], ["indices"], axis=1, keepdims=1),
    ]
    graph_inputs = [helper.make_tensor_value_info("feats", TensorProto.FLOAT, [1, 128, "T"])]
    if inputs == 2:
        graph_inputs.append(helper.make_tensor_value_info("feats_length", TensorProto.INT32, [1]))
    graph = helper.make_graph(
        nodes, "tiny_s3", graph_inputs,
        [helper.make_tensor_value_info("indices", TensorProto.INT64, [1, 1, "T4"])],
        initializer=[w1, w2],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = build_tiny_s3(tmp_path_factory.mktemp("s3") / "speech_tokenizer_v2.onnx")
    return build_tokenizer("s3", onnx_path=str(path), codebook_size=TINY_CODES)


def test_ten_seconds_give_250_codes(tiny):
    codes = tiny.encode(speechlike(10.0, seed=1), 16000)
    assert isinstance(tiny, SpeechTokenizer) and tiny.frame_rate == 25.0
    assert codes.shape == (250,) and codes.dtype == np.int64
    assert 0 <= codes.min() and codes.max() < TINY_CODES and len(np.unique(codes)) > 1
    assert tiny.encode(speechlike(10.0, seed=1, sr=48000), 48000).shape == (250,)
    assert tiny.encode(speechlike(0.01, seed=1), 16000).shape == (1,)


def test_long_audio_is_chunked_at_30_s(tiny):
    wave = speechlike(35.0, seed=2)
    codes = tiny.encode(wave, 16000)
    assert codes.shape == (875,)
    # the first 30 s are one chunk: the same codes as tokenizing them alone
    assert np.array_equal(codes[:750], tiny.encode(wave[: 30 * 16000], 16000))


def test_deterministic_and_save_load_round_trip(tmp_path, tiny):
    wave = speechlike(4.0, seed=3)
    assert np.array_equal(tiny.encode(wave, 16000), tiny.encode(wave, 16000))
    tiny.save(tmp_path / "tok")
    loaded = load_tokenizer(tmp_path / "tok")
    assert isinstance(loaded, S3Tokenizer) and loaded.fingerprint == tiny.fingerprint
    assert np.array_equal(loaded.encode(wave, 16000), tiny.encode(wave, 16000))
    # a CosyVoice model directory (or the .onnx itself) loads directly, with v2's codebook size
    assert load_tokenizer(tiny.path.parent).codebook_size == 6561
    other = build_tiny_s3(tmp_path / "other.onnx", seed=1)
    assert build_tokenizer("s3", onnx_path=str(other), codebook_size=TINY_CODES).fingerprint != tiny.fingerprint


def test_missing_file_names_the_path(tmp_path, monkeypatch):
    missing = tmp_path / "speech_tokenizer_v2.onnx"
    with pytest.raises(ConfigError, match=rf"{missing}: S3 tokenizer model file not found"):
        build_tokenizer("s3", onnx_path=str(missing))
    monkeypatch.delenv(ENV_VAR, raising=False)
    with pytest.raises(ConfigError, match="onnx_path' is required"):
        build_tokenizer("s3")
    with pytest.raises(ConfigError, match=rf"{tmp_path / 'x.onnx'}: S3 tokenizer model file not found"):
        load_tokenizer(tmp_path / "x.onnx")
    with pytest.raises(ConfigError, match="no speech_tokenizer_v2.onnx or speech_tokenizer_v1.onnx"):
        S3Tokenizer.from_path(tmp_path)


def test_non_onnx_and_wrong_graph_name_the_path(tmp_path):
    junk = tmp_path / "speech_tokenizer_v2.onnx"
    junk.write_bytes(b"<html>404 not found</html>")
    with pytest.raises(ConfigError, match=rf"{junk}: not a loadable ONNX model"):
        build_tokenizer("s3", onnx_path=str(junk))
    one_input = build_tiny_s3(tmp_path / "one.onnx", inputs=1)
    with pytest.raises(ConfigError, match=rf"{one_input}: expected inputs \(feats"):
        build_tokenizer("s3", onnx_path=str(one_input))


def test_codes_beyond_codebook_are_refused(tiny):
    small = build_tokenizer("s3", onnx_path=str(tiny.path), codebook_size=2)
    with pytest.raises(ConfigError, match="codes outside"):
        small.encode(speechlike(2.0, seed=4), 16000)


@pytest.mark.skipif(not os.environ.get(ENV_VAR), reason=f"{ENV_VAR} not set: no CosyVoice2 speech_tokenizer_v2.onnx")
def test_real_cosyvoice2_model():
    tok = build_tokenizer("s3", onnx_path=os.environ[ENV_VAR])
    wave = speechlike(10.0, seed=5)
    codes = tok.encode(wave, 16000)
    assert codes.shape == (250,) and 0 <= codes.min() and codes.max() < 6561
    assert np.array_equal(codes, tok.encode(wave, 16000))
