"""The ctypes binding of eSpeak NG: audio comes out, parameters act, errors are clear."""

import numpy as np
import pytest

from convmem.corpus.espeak import EspeakError, VoiceSettings, native_sample_rate, synthesize

TEXT = "We still need to sort out the report for Monday."


def test_speaks_plausible_audio():
    wave = synthesize(TEXT, VoiceSettings("en-us+m3"))
    seconds = wave.size / native_sample_rate()
    assert native_sample_rate() == 22050
    assert wave.dtype == np.float32 and 1.5 < seconds < 5.0  # ~10 words at 175 wpm
    assert 0.05 < np.abs(wave).max() <= 1.0


def test_rate_and_volume_parameters_act():
    slow = synthesize(TEXT, VoiceSettings("en-us", rate=120))
    fast = synthesize(TEXT, VoiceSettings("en-us", rate=240))
    assert slow.size > 1.5 * fast.size
    quiet = synthesize(TEXT, VoiceSettings("en-us", volume=40))
    loud = synthesize(TEXT, VoiceSettings("en-us", volume=160))
    rms = lambda w: float(np.sqrt(np.mean(w.astype(np.float64) ** 2)))  # noqa: E731
    assert rms(loud) > 2.5 * rms(quiet)


def test_ssml_text_is_escaped_and_ssml_documents_accepted():
    # '<' and '&' in plain text must not break the SSML parser.
    assert synthesize("Tom & Anna < Bob", VoiceSettings("en-us")).size > 0
    doc = '<speak>Hello <break time="500ms"/> there.</speak>'
    plain = synthesize("Hello there.", VoiceSettings("en-us"))
    with_break = synthesize(doc, VoiceSettings("en-us"), ssml=True)
    assert with_break.size > plain.size + 0.3 * native_sample_rate()


def test_unknown_voice_is_a_clear_error():
    with pytest.raises(EspeakError, match="no voice 'xx-nope'"):
        synthesize(TEXT, VoiceSettings("xx-nope"))
    # the engine still works afterwards
    assert synthesize("fine", VoiceSettings("en-us")).size > 0


def test_bad_parameters_and_empty_text_are_errors():
    with pytest.raises(EspeakError, match="rate=20 is outside"):
        synthesize(TEXT, VoiceSettings("en-us", rate=20))
    with pytest.raises(EspeakError, match="empty text"):
        synthesize("   ", VoiceSettings("en-us"))
