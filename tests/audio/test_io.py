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


# -- files that lie (issue: hardening) -----------------------------------------------------------


def test_a_directory_named_like_audio_is_named_as_a_directory(tmp_path):
    (tmp_path / "x.wav").mkdir()
    with pytest.raises(AudioError, match="x.wav: is a directory"):
        audio_info(tmp_path / "x.wav")


def test_an_impossible_sample_rate_names_the_file(tmp_path):
    path = tmp_path / "one_hz.wav"
    sf.write(path, make_tone(0.1)[:8], 1)
    with pytest.raises(AudioError, match=r"one_hz.wav: sample rate 1 Hz is not an audio rate"):
        audio_info(path)


def test_streamed_wav_with_unknown_sizes_is_read_whole(tone_wav):
    """A WAV written to a pipe carries 0xFFFFFFFF for its RIFF and data sizes; libsndfile reads it
    to the end of the file, and so do we."""
    path = tone_wav("streamed.wav", seconds=2.0, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    assert data[36:40] == b"data"
    data[4:8] = data[40:44] = b"\xff\xff\xff\xff"
    path.write_bytes(bytes(data))
    assert audio_info(path).frames == 32000
    assert load_audio(path).size == 32000


def _long_ogg(path, seconds=40.0):
    rng = np.random.default_rng(0)
    wave = make_tone(seconds) + 0.05 * rng.standard_normal(int(seconds * 16000)).astype(np.float32)
    sf.write(path, wave, 16000, format="OGG", subtype="VORBIS")
    return path


@pytest.mark.parametrize("keep", [0.5, 0.93])
def test_truncated_ogg_names_the_file(tmp_path, keep):
    """libsndfile reports a cut Ogg's shorter length as the file's own: only the container shows it."""
    whole = _long_ogg(tmp_path / "whole.ogg")
    assert audio_info(whole).duration == pytest.approx(40.0, abs=0.01)
    cut = tmp_path / "cut.ogg"
    cut.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * keep)])
    assert sf.info(cut).frames > 0  # libsndfile alone would go ahead
    with pytest.raises(AudioError, match="cut.ogg: truncated audio"):
        audio_info(cut)
    with pytest.raises(AudioError, match="cut.ogg: truncated audio"):
        load_audio(cut)


def test_block_reader_refuses_an_all_nan_file(tmp_path):
    from convmem.audio.io import iter_file_blocks

    path = tmp_path / "nan.wav"
    sf.write(path, np.full(4000, np.nan, dtype=np.float32), 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="nan.wav: audio is all NaN"):
        list(iter_file_blocks(path, block_s=0.1))
    sf.write(path, np.r_[np.full(2000, np.nan), np.zeros(2000)].astype(np.float32), 16000, subtype="FLOAT")
    assert sum(b.size for b, _, _ in iter_file_blocks(path, block_s=0.1)) == 4000  # some NaN: silence
