"""The packaged Whisper encoder: equal to CTranslate2's own encoder, variable length, batched, 25 Hz."""

from __future__ import annotations

import numpy as np
import pytest

from convmem.errors import ConfigError
from convmem.tokenizers.whisper_encoder import WINDOW_CODES, WhisperAudioEncoder, padding_difference
from convmem.tokenizers.whisper_package import model_bytes, whisper_package

from .conftest import speechlike

# Documented in docs/experiments/whisper-front-end.md: per-frame cosine between the variable-length and the
# 30 s padded hidden states of a 2.3 s utterance; the conv stem is nearly unchanged, deeper
# layers drift (Whisper learnt to attend over 30 s windows that end in silence).
PADDING_COSINE_FLOOR = {"tiny.en": {0: 0.999, 2: 0.97, 4: 0.80}, "base": {0: 0.999, 3: 0.95, 6: 0.80}}


@pytest.fixture(scope="module", params=["tiny.en", "base"])
def encoder(request):
    return WhisperAudioEncoder(request.param)


def _ct2_encode(name: str, mel: np.ndarray, tmp_path) -> np.ndarray:
    ctranslate2 = pytest.importorskip("ctranslate2")
    pkg = whisper_package(name)
    (tmp_path / "model.bin").write_bytes(model_bytes(pkg))
    for f in ("config.json", "vocabulary.txt", "tokenizer.json"):
        if (pkg.directory / f).is_file():
            (tmp_path / f).write_bytes((pkg.directory / f).read_bytes())
    model = ctranslate2.models.Whisper(str(tmp_path), device="cpu", compute_type="float32")
    return np.array(model.encode(ctranslate2.StorageView.from_array(mel[None]), to_cpu=True))[0]


def test_padded_output_equals_ctranslate2s_encoder(encoder, tmp_path):
    wave = speechlike(2.3, seed=3)
    mel = encoder.log_mel(np.pad(wave, (0, 30 * 16000 - wave.size)))
    assert mel.shape == (80, 3000)
    ref = _ct2_encode(encoder.package.name, mel, tmp_path)  # float32[1500, hidden] at 50 Hz
    ours = encoder.forward([mel], layer=-1)[0]
    ref25 = ref.reshape(WINDOW_CODES, 2, -1).mean(axis=1)
    assert ours.shape == ref25.shape
    assert np.linalg.norm(ours - ref25) / np.linalg.norm(ref25) < 1e-4
    assert np.abs(ours - ref25).max() < 2e-3


def test_variable_length_stays_within_the_documented_distance_of_padding(encoder):
    wave = speechlike(2.3, seed=4)
    for layer, floor in PADDING_COSINE_FLOOR[encoder.package.name].items():
        diff = padding_difference(encoder, wave, layer)
        assert diff["cosine"] >= floor, (layer, diff)
    # and it is a real difference, not the same computation under another name
    assert padding_difference(encoder, wave, -1)["cosine"] < 0.999


def test_frames_are_25_hz_and_long_audio_goes_in_30_s_pieces(encoder):
    ten = encoder.features([speechlike(10.0, seed=1)])[0]
    assert ten.shape == (250, encoder.hidden_size) and ten.dtype == np.float32
    long = speechlike(31.0, seed=2)
    whole = encoder.features([long])[0]
    assert whole.shape[0] == 775
    head, tail = encoder.features([long[: 30 * 16000], long[30 * 16000:]])
    np.testing.assert_allclose(whole, np.concatenate([head, tail]), atol=1e-4)


def test_a_batch_gives_each_utterance_what_it_gets_alone(encoder):
    waves = [speechlike(s, seed=i) for i, s in enumerate((2.3, 0.9, 4.1))]
    together = encoder.features(waves, batch_codes=10_000)
    for wave, got in zip(waves, together):
        np.testing.assert_allclose(got, encoder.features([wave])[0], atol=2e-4)
    layered = encoder.forward_layers([encoder.log_mel(w) for w in waves], [0, -1])
    assert sorted(layered) == [0, encoder.n_layers]
    np.testing.assert_allclose(layered[encoder.n_layers][1], together[1], atol=2e-4)


def test_layer_range_is_checked():
    with pytest.raises(ConfigError, match="layer 9 out of range"):
        WhisperAudioEncoder("tiny.en", layer=9)
