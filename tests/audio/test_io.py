import numpy as np
import pytest
import soundfile as sf

from convmem.audio.io import StreamResampler, audio_info, load_audio, resample, write_wav
from convmem.errors import AudioError
from tests.conftest import make_tone


@pytest.mark.parametrize("sr,channels,name", [(48000, 2, "s.wav"), (44100, 1, "m.flac"), (8000, 1, "n.wav"), (16000, 3, "t.flac")])
def test_any_rate_and_channels_become_mono_16k(tone_wav, sr, channels, name):
    path = tone_wav(name, seconds=1.5, sr=sr, channels=channels)
    wave = load_audio(path)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert abs(wave.size - 24000) <= 1
    # the 220 Hz tone survives resampling: dominant FFT bin within 2 Hz
    spec = np.abs(np.fft.rfft(wave))
    assert abs(np.argmax(spec) * 16000 / wave.size - 220.0) < 2.0


def test_segment_read_matches_slice(tone_wav):
    path = tone_wav("seg.wav", seconds=3.0)
    full = load_audio(path)
    seg = load_audio(path, start=1.0, end=2.0)
    np.testing.assert_allclose(seg, full[16000:32000], atol=1e-6)


def test_missing_file_named(tmp_path):
    with pytest.raises(AudioError, match="nope.wav: audio file not found"):
        load_audio(tmp_path / "nope.wav")


def test_corrupt_file_named(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk")
    with pytest.raises(AudioError, match="bad.wav"):
        load_audio(bad)


def test_empty_file_named(tmp_path):
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(AudioError, match="empty.wav: empty audio"):
        load_audio(empty)


def test_truncated_file_named(tone_wav):
    path = tone_wav("trunc.wav", seconds=2.0)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # header still promises 2 s
    with pytest.raises(AudioError, match="trunc.wav: truncated audio"):
        load_audio(path)


def test_all_nan_named(tmp_path):
    path = tmp_path / "nan.flac"
    sf.write(tmp_path / "nan.wav", np.full(1600, np.nan, dtype=np.float32), 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="nan.wav: audio is all NaN"):
        load_audio(tmp_path / "nan.wav")
    assert not path.exists()


def test_write_wav_roundtrip_and_atomic(tmp_path):
    wave = make_tone(0.5)
    out = write_wav(tmp_path / "o.wav", wave)
    assert audio_info(out).sample_rate == 16000
    np.testing.assert_allclose(load_audio(out), wave, atol=1e-4)
    with pytest.raises(AudioError):
        write_wav(tmp_path / "x.wav", np.zeros(0, dtype=np.float32))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.wav"]


def test_resample_length_rational():
    wave = make_tone(1.0, sr=44100)
    assert resample(wave, 44100, 16000).size == 16000


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_stream_resampler_equals_one_shot(rate):
    rng = np.random.default_rng(rate)
    x = (0.3 * rng.standard_normal(rate * 2 + 77)).astype(np.float32)
    r = StreamResampler(rate)
    parts, i = [], 0
    while i < x.size:
        n = int(rng.integers(1, rate // 5))
        parts.append(r.push(x[i:i + n]))
        i += n
    parts.append(r.flush())
    got = np.concatenate(parts)
    want = resample(x, rate, 16000)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=2e-6)
