"""Whisper base transcripts of eSpeak sentences (packaged weights, CTranslate2)."""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest

from convmem.errors import AudioError, ConfigError
from convmem.speakers import transcribe


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z']+", text.lower()))


@pytest.fixture(scope="module")
def sentence():
    from convmem.audio.io import resample
    from convmem.corpus.espeak import native_sample_rate, synthesize

    text = "Please bring the documents when you come over tomorrow."
    return text, resample(synthesize(text), native_sample_rate(), 16000)


def test_transcript_of_an_espeak_sentence_contains_its_words(sentence):
    text, wave = sentence
    got = transcribe.Transcriber(language="en")(wave)
    assert {"bring", "documents", "come", "tomorrow"} <= _words(got), got
    auto = transcribe.Transcriber()
    assert {"documents", "tomorrow"} <= _words(auto(wave)) and auto.last_language == "en"


def test_bad_language_audio_and_missing_package_are_clear(sentence, monkeypatch):
    with pytest.raises(ConfigError, match="--language 'xx' is not one Whisper knows"):
        transcribe.Transcriber(language="xx")
    with pytest.raises(ConfigError, match="English only"):
        transcribe.Transcriber(language="de", model="tiny.en")
    with pytest.raises(AudioError, match="mono"):
        transcribe.Transcriber(language="en")(np.zeros((2, 100), np.float32))
    monkeypatch.setitem(sys.modules, "ctranslate2", None)
    transcribe._load.cache_clear()
    try:
        with pytest.raises(ConfigError, match=r"needs the ctranslate2 package; run: pip install ctranslate2==4.8.5"):
            transcribe.Transcriber(language="en")
    finally:
        transcribe._load.cache_clear()
