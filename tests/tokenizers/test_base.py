from __future__ import annotations

import numpy as np
import pytest

from convmem.errors import AudioError, ConfigError
from convmem.tokenizers.base import build_tokenizer, fit_to_frames, load_tokenizer, n_frames, prepare_waveform


@pytest.mark.parametrize(
    ("samples", "frames"),
    [(160000, 250), (159679, 249), (159680, 250), (160319, 250), (160320, 251), (1, 1), (319, 1), (960, 2)],
)
def test_frame_rule_is_40ms_rounded_half_up_at_least_one(samples, frames):
    assert n_frames(samples) == frames


def test_zero_samples_is_an_error():
    with pytest.raises(AudioError, match="empty"):
        n_frames(0)


def test_fit_to_frames_pads_with_zeros_and_trims():
    wave = np.ones(1000, dtype=np.float32)
    padded = fit_to_frames(wave, 2, extra=80)
    assert padded.shape == (1360,) and padded[:1000].all() and not padded[1000:].any()
    assert fit_to_frames(wave, 1).shape == (640,)


def test_prepare_waveform_resamples_to_16k():
    wave = np.zeros(44100 * 2, dtype=np.float32)
    assert prepare_waveform(wave, 44100).shape == (32000,)


@pytest.mark.parametrize(
    ("wave", "match"),
    [
        (np.zeros((2, 100), dtype=np.float32), "1-D"),
        (np.zeros(0, dtype=np.float32), "empty"),
        (np.zeros(100, dtype=np.int16), "floating"),
        (np.array([0.0, np.nan], dtype=np.float32), "NaN"),
    ],
)
def test_prepare_waveform_rejects_bad_audio(wave, match):
    with pytest.raises(AudioError, match=match):
        prepare_waveform(wave, 16000)


def test_registry_names_unknown_kind_and_key():
    with pytest.raises(ConfigError, match="unknown tokenizer kind 'hubert'"):
        build_tokenizer("hubert")
    with pytest.raises(ConfigError, match="codebok_size"):
        build_tokenizer("kmeans", codebok_size=8)
    with pytest.raises(ConfigError, match="codebook_size >= 2"):
        build_tokenizer("kmeans", codebook_size=1)


def test_load_tokenizer_errors_name_the_directory(tmp_path):
    with pytest.raises(ConfigError, match="not a tokenizer directory"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(ConfigError, match="tokenizer.json: not valid JSON"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_text('{"kind": "wavlm"}')
    with pytest.raises(ConfigError, match="unknown tokenizer kind 'wavlm'"):
        load_tokenizer(tmp_path)
