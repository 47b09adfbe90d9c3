"""silero-vad segmentation: offline and streaming agree, long speech is cut."""

from __future__ import annotations

import socket

import numpy as np
import pytest
import torch

from convmem.audio.vad import (
    SpeechSegment,
    StreamingSegmenter,
    VADConfig,
    check_wave,
    load_vad_model,
    speech_segments,
)
from convmem.errors import AudioError, ConfigError
from tests.model_fixture import speech_clips, speech_recording


@pytest.fixture(scope="module")
def vad_model():
    torch.set_num_threads(1)
    return load_vad_model()


def _stream(wave, model, config=VADConfig(), chunk=333) -> tuple[list[SpeechSegment], StreamingSegmenter]:
    seg = StreamingSegmenter(config, model=model)
    out = []
    for i in range(0, wave.size, chunk):
        out += seg.push(wave[i:i + chunk])
    return out + seg.flush(), seg


def test_model_loads_without_network(monkeypatch):
    def refuse(*a, **k):
        raise OSError("network used")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    threads = torch.get_num_threads()
    model = load_vad_model()
    assert torch.get_num_threads() == threads  # silero's import-time set_num_threads(1) undone
    p = model(torch.zeros(512), 16000).item()
    assert 0.0 <= p < 0.5  # silence is not speech


def test_each_clip_is_one_utterance_and_stream_equals_offline(vad_model):
    wave, spans = speech_recording(6, seed=3)
    offline = speech_segments(wave, model=vad_model)
    streamed, _ = _stream(wave, vad_model)
    assert len(offline) == len(spans) == len(streamed)
    for (a, b), s, (cs, ce) in zip(offline, streamed, spans):
        assert abs(s.start - a) <= 0.032 and abs(s.end - b) <= 0.032  # within one silero frame
        assert cs - 0.05 <= s.start < s.end <= ce + 0.05  # inside its clip
        assert s.wave.size == round((s.end - s.start) * 16000)
        np.testing.assert_array_equal(s.wave, wave[round(s.start * 16000): round(s.end * 16000)])


def test_onnx_and_torchscript_backends_agree():
    pytest.importorskip("onnxruntime")
    wave, _ = speech_recording(4, seed=9)
    jit, _ = _stream(wave, load_vad_model("jit"))
    onnx, _ = _stream(wave, load_vad_model("onnx"))
    assert len(jit) == len(onnx) == 4
    for a, b in zip(jit, onnx):
        assert abs(a.start - b.start) <= 0.032 and abs(a.end - b.end) <= 0.032


def test_auto_backend_falls_back_to_torchscript(monkeypatch):
    import importlib.util

    from convmem.audio.vad import resolve_backend

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "onnxruntime" else real(n, *a))
    assert resolve_backend("auto") == "jit" and resolve_backend("onnx") == "onnx"
    assert isinstance(load_vad_model("auto"), torch.jit.ScriptModule)


def test_chunk_size_does_not_change_segments(vad_model):
    wave, _ = speech_recording(3, seed=5)
    a, _ = _stream(wave, vad_model, chunk=160)
    b, _ = _stream(wave, vad_model, chunk=wave.size)
    assert [(s.start, s.end) for s in a] == [(s.start, s.end) for s in b]


def test_silence_and_noise_give_nothing(vad_model):
    rng = np.random.default_rng(0)
    quiet = np.concatenate([np.zeros(32000, np.float32), 0.003 * rng.standard_normal(64000).astype(np.float32)])
    out, _ = _stream(quiet, vad_model)
    assert out == []
    assert speech_segments(quiet, model=vad_model) == []


def test_long_speech_is_cut_within_bounds(vad_model):
    # clips without their leading/trailing silence, back to back: ~15 s of unbroken speech
    clips = [c[int(0.9 * 16000):-int(0.4 * 16000)] for c in speech_clips(6, seed=7)]
    wave = np.concatenate(clips)
    cfg = VADConfig(max_utterance_s=3.0, min_utterance_s=0.5, min_silence_s=2.0)
    out, _ = _stream(wave, vad_model, cfg)
    assert len(out) >= wave.size / 16000 / 3.0 - 1
    for a, b in zip(out, out[1:]):
        assert a.end <= b.start  # never overlapping
    for s in out:
        assert 0.5 <= s.duration <= 3.0 + 0.032 + 1e-9
    covered = sum(s.duration for s in out)
    assert covered >= 0.8 * wave.size / 16000  # cut, not thrown away


def test_short_burst_is_dropped_and_counted(vad_model):
    clip = speech_clips(1, seed=11)[0]
    t0 = int(1.2 * 16000)
    burst = np.concatenate([np.zeros(16000, np.float32), clip[t0:t0 + int(0.3 * 16000)], np.zeros(16000, np.float32)])
    out, seg = _stream(burst, vad_model, VADConfig(min_utterance_s=0.5))
    assert out == [] and seg.dropped_short == 1
    out, seg = _stream(burst, vad_model, VADConfig(min_utterance_s=0.1))
    assert len(out) == 1 and seg.dropped_short == 0


def test_open_utterance_closed_by_flush(vad_model):
    wave, spans = speech_recording(1, seed=2)
    cut = int(spans[0][0] * 16000 + 2.0 * 16000)  # stream ends mid-speech
    seg = StreamingSegmenter(model=vad_model)
    assert seg.push(wave[:cut]) == []
    last = seg.flush()
    assert len(last) == 1 and last[0].end == pytest.approx(cut / 16000)


def test_times_continue_after_flush(vad_model):
    wave, _ = speech_recording(2, seed=6)
    seg = StreamingSegmenter(model=vad_model)
    first = seg.push(wave) + seg.flush()
    second = seg.push(wave) + seg.flush()
    offset = wave.size / 16000
    assert len(first) == len(second) == 2
    for a, b in zip(first, second):
        assert b.start == pytest.approx(a.start + offset) and b.end == pytest.approx(a.end + offset)
        np.testing.assert_array_equal(a.wave, b.wave)


def test_buffer_stays_bounded_on_unbroken_speech(vad_model):
    clip = speech_clips(1, seed=4)[0][16000:]
    wave = np.tile(clip, 8)  # ~20 s with only short pauses
    cfg = VADConfig(max_utterance_s=4.0, min_silence_s=1.5)
    seg = StreamingSegmenter(cfg, model=vad_model)
    most = 0
    for i in range(0, wave.size, 1600):
        seg.push(wave[i:i + 1600])
        most = max(most, seg._buf.size)
    assert most <= (4.0 + 0.1) * 16000 + 1600


@pytest.mark.parametrize("wave,rate,msg", [
    (np.zeros(10, np.int16), 16000, "dtype int16"),
    (np.array([0.0, np.nan], np.float32), 16000, "NaN"),
    (np.zeros((2, 10), np.float32), 16000, "shape"),
    (np.zeros(0, np.float32), 16000, "empty"),
    (np.zeros(10, np.float32), 0, "sample rate"),
    (np.zeros(10, np.float32), -16000, "sample rate"),
    (np.zeros(10, np.float32), 10**7, "sample rate"),
    (np.zeros(10, np.float32), 16000.5, "sample rate"),
])
def test_bad_audio_is_named(wave, rate, msg):
    with pytest.raises(AudioError, match=msg):
        check_wave(wave, rate, "chunk")


def test_chunk_length_limit():
    with pytest.raises(AudioError, match="smaller chunks"):
        check_wave(np.zeros(16000 * 3, np.float32), 16000, "chunk", max_seconds=2.0)


@pytest.mark.parametrize("kw", [{"threshold": 1.5}, {"min_silence_s": 0}, {"max_utterance_s": 0.6},
                                {"min_utterance_s": 2.0, "max_utterance_s": 3.0}, {"backend": "tpu"}])
def test_bad_config_is_named(kw):
    with pytest.raises(ConfigError, match="vad"):
        VADConfig(**kw)
