"""eSpeak NG text-to-speech through its C API (ctypes), from the `espeakng-loader` wheel.

The wheel ships `libespeak-ng.so` and `espeak-ng-data`, so no system install is needed. We bind
the C API ourselves (instead of a Python wrapper) because we need per-utterance control of
rate / volume / pitch / range on top of a voice variant, and SSML input, all synchronously.

Thread and process safety: libespeak-ng keeps global state (one voice and one parameter set per
process, one synthesis at a time). This module therefore initialises the library once per process
and serialises every synthesis behind a process-wide lock; each call sets the voice and *all*
parameters before synthesising, so the result never depends on what a previous call left behind.
Parallel synthesis is done with processes (one library instance each), never threads.
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass
from xml.sax.saxutils import escape

import numpy as np

from convmem.errors import ConvmemError


class EspeakError(ConvmemError, RuntimeError):
    """eSpeak NG could not be loaded, initialised, or asked to speak (message says which)."""


# espeak_AUDIO_OUTPUT / espeak_PARAMETER / flags from speak_lib.h (API revision 12).
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_PARAM = {"rate": 1, "volume": 2, "pitch": 3, "range": 4}
_CHARS_UTF8 = 1
_SSML = 0x10
_POS_CHARACTER = 1
_EE = {0: "EE_OK", -1: "EE_INTERNAL_ERROR", 1: "EE_BUFFER_FULL", 2: "EE_NOT_FOUND"}

# Valid ranges of espeak_SetParameter (speak_lib.h): rate in words/minute, the rest 0..100/200.
PARAM_LIMITS = {"rate": (80, 450), "volume": (0, 200), "pitch": (0, 100), "range": (0, 100)}


class _Event(ctypes.Structure):
    # espeak_EVENT; we only need the type, but the layout must be right for the callback.
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass(frozen=True)
class VoiceSettings:
    """One rendering's voice: `voice` is an eSpeak name such as "en-us+f3" (language+variant)."""

    voice: str = "en-us"
    rate: int = 175  # words per minute
    volume: int = 100  # amplitude, 0..200
    pitch: int = 50  # base pitch, 0..100
    range: int = 50  # pitch range, 0..100


class _Engine:
    """The process's one libespeak-ng instance."""

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as exc:  # pragma: no cover - a dependency of convmem
            raise EspeakError("the 'espeakng-loader' package is not installed (pip install espeakng-loader)") from exc
        lib_path = espeakng_loader.get_library_path()
        try:
            data_path = espeakng_loader.get_data_path()
            lib = ctypes.CDLL(lib_path)
        except (OSError, RuntimeError) as exc:
            raise EspeakError(f"cannot load eSpeak NG from {lib_path}: {exc}") from None
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
            ctypes.c_uint, ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synchronize.restype = ctypes.c_int
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_ng_SetRandSeed.restype = None
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path.encode(), 0)
        if rate <= 0:
            raise EspeakError(f"espeak_Initialize failed (returned {rate}) with data at {data_path}")
        self.lib = lib
        self.sample_rate = int(rate)
        self._chunks: list[np.ndarray] = []
        # Keep a reference: ctypes would free the trampoline while C still holds it.
        self._callback = _CALLBACK(self._on_audio)
        lib.espeak_SetSynthCallback(self._callback)
        self._voice: str | None = None

    def _on_audio(self, wav, numsamples, events) -> int:
        if numsamples > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(numsamples,)).copy())
        return 0  # 0 = go on synthesising

    def set_voice(self, name: str) -> None:
        if name == self._voice:
            return
        err = self.lib.espeak_SetVoiceByName(name.encode("utf-8"))
        if err != 0:
            self._voice = None
            raise EspeakError(
                f"eSpeak NG has no voice {name!r} ({_EE.get(err, err)}); use a language such as 'en-us', "
                "optionally with a variant: 'en-us+f3', 'en+m2'"
            )
        self._voice = name

    def set_parameter(self, name: str, value: int) -> None:
        lo, hi = PARAM_LIMITS[name]
        if not lo <= value <= hi:
            raise EspeakError(f"eSpeak parameter {name}={value} is outside [{lo}, {hi}]")
        err = self.lib.espeak_SetParameter(_PARAM[name], int(value), 0)
        if err != 0:
            raise EspeakError(f"espeak_SetParameter({name}, {value}) failed ({_EE.get(err, err)})")

    def synth(self, payload: bytes, flags: int) -> np.ndarray:
        self._chunks = []
        buf = ctypes.create_string_buffer(payload)
        err = self.lib.espeak_Synth(buf, len(payload) + 1, 0, _POS_CHARACTER, 0, flags, None, None)
        if err != 0:
            raise EspeakError(f"espeak_Synth failed ({_EE.get(err, err)})")
        self.lib.espeak_Synchronize()
        chunks, self._chunks = self._chunks, []
        if not chunks:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate(chunks).astype(np.int16, copy=False)


_ENGINE: _Engine | None = None
_LOCK = threading.Lock()


def _engine() -> _Engine:
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = _Engine()
    return _ENGINE


def native_sample_rate() -> int:
    """Sample rate (Hz) of eSpeak NG's output (22050 for the shipped voices)."""
    with _LOCK:
        return _engine().sample_rate


def synthesize(
    text: str, settings: VoiceSettings = VoiceSettings(), ssml: bool = False, seed: int | None = None
) -> np.ndarray:
    """Speak `text` with `settings`; returns float32[samples] in [-1, 1] at `native_sample_rate()`.

    `text` is plain text (escaped and wrapped in <speak> so it always goes through the SSML parser)
    unless `ssml=True`, in which case it must already be an SSML document. `seed` seeds eSpeak's
    noise generator (breathy variants use it). Note: the library also carries pitch-flutter phase
    from one call to the next, so byte-identical output needs the same sequence of calls in a
    fresh process (what `convmem.corpus.synth` does).
    Raises EspeakError for an unknown voice, out-of-range parameters or a failed synthesis.
    """
    if not text or not text.strip():
        raise EspeakError("refusing to synthesise empty text")
    document = text if ssml else f"<speak>{escape(text)}</speak>"
    with _LOCK:
        eng = _engine()
        eng.set_voice(settings.voice)
        for name in ("rate", "volume", "pitch", "range"):
            eng.set_parameter(name, getattr(settings, name))
        if seed is not None:
            eng.lib.espeak_ng_SetRandSeed(int(seed))
        pcm = eng.synth(document.encode("utf-8"), _CHARS_UTF8 | _SSML)
    if pcm.size == 0:
        raise EspeakError(f"eSpeak NG produced no audio for {text[:60]!r}")
    return pcm.astype(np.float32) / 32768.0
