"""The WebSocket protocol of `convmem serve` (endpoint `/ws`), its message schema and error codes.

One WebSocket connection is one conversation: one test-time memory, created when the client's
`start` is accepted and discarded when the connection ends (close, `end`, error, idle timeout or
an abrupt disconnect). Nothing a client sends is written to disk.

Client -> server
  1. JSON text `{"type": "start", "sample_rate": 16000, "format": "f32le", "mode": "stream"}`
       (optional "key": str, default "live", seeds the memory: same key + same audio = same output)
       format: "f32le" (float32 little-endian, [-1, 1]) or "s16le" (int16 little-endian)
       mode:   "stream"     - binary frames are consecutive chunks of one mono recording; a voice
                              activity detector cuts it into utterances
               "utterances" - each utterance is announced by `{"type": "utterance"}` (optional
                              "speaker": str, "start"/"end": seconds, default back to back;
                              finite, at most MAX_TIME_S) and sent as the binary frame that
                              follows it (at least 0.1 s of audio)
  2. binary frames of audio (mode "stream"), or utterance header + binary frame pairs
  3. JSON text `{"type": "end"}`: the server flushes the last utterance, answers `end`, closes 1000

Server -> client
  `{"type": "ready", "session": id, "labels": [...], "memory": "dpm", "limits": {...}}`
  `{"type": "utterance", "index": i, "start": s, "end": s, "speaker": str|null, "emotion": label,
    "probs": {label: p}}` as soon as an utterance ends (times are seconds of the session's audio);
    "speaker" is the client's, else "spk1", "spk2"... assigned online (`serve --speakers`), else null
  `{"type": "end", "utterances": n, "audio_seconds": s}` after the client's `end`
  `{"type": "error", "code": code, "message": text}` then the server closes the connection with
    the close code of ERROR_CLOSE_CODES[code]. Every error ends the session: a client that breaks
    the protocol has a bug, and a memory written from a half-understood stream is not to be trusted.

Authentication: when the server has a token, the client sends `Authorization: Bearer TOKEN` or,
from a browser (which cannot set headers on a WebSocket), the query parameter `?token=TOKEN`
(never written to the server's log). A browser's page must come from an allowed origin
(serve/access.py): the service's own page or a loopback host unless the server allows more.

Limits: a session ends after `max_session_wall_s` seconds whatever it does (`session_expired`),
and after `idle_timeout_s` seconds without progress (`idle_timeout`). Progress is audio that
advances the session's stream by at least `idle_progress_s` seconds since the last progress, or
a classified utterance; messages without new audio (a few bytes, control messages) are not.

JSON numbers are finite: NaN and Infinity (which Python's json reads) are refused as bad_json,
and the server never sends them.
"""

from __future__ import annotations

import json
from enum import Enum
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

FORMATS = {"f32le": "<f4", "s16le": "<i2"}  # wire format -> numpy dtype
MAX_TIME_S = 7 * 24 * 3600.0  # utterance times: a week of recording; beyond is a client bug


class ErrorCode(str, Enum):
    BAD_JSON = "bad_json"  # a text frame that is not a JSON object
    UNKNOWN_TYPE = "unknown_type"  # a JSON object whose "type" the server does not know
    INVALID_MESSAGE = "invalid_message"  # a known type with missing / wrong fields
    PROTOCOL = "protocol"  # a valid message at the wrong moment (audio before start, ...)
    UNSUPPORTED_SAMPLE_RATE = "unsupported_sample_rate"
    UNSUPPORTED_FORMAT = "unsupported_format"
    BAD_AUDIO = "bad_audio"  # bytes that are not whole samples, NaN/inf, empty, unusable utterance
    MESSAGE_TOO_BIG = "message_too_big"
    SESSION_TOO_LONG = "session_too_long"  # more audio than max_session_seconds
    TOO_MANY_SESSIONS = "too_many_sessions"
    UNAUTHORIZED = "unauthorized"
    IDLE_TIMEOUT = "idle_timeout"  # no progress for idle_timeout_s
    SESSION_EXPIRED = "session_expired"  # open for max_session_wall_s
    FORBIDDEN = "forbidden"  # Host or Origin not allowed (serve/access.py)
    INTERNAL = "internal"


# RFC 6455 close codes; 44xx are application codes mirroring the HTTP status they mean.
ERROR_CLOSE_CODES = {
    ErrorCode.BAD_JSON: 1008,
    ErrorCode.UNKNOWN_TYPE: 1008,
    ErrorCode.INVALID_MESSAGE: 1008,
    ErrorCode.PROTOCOL: 1008,
    ErrorCode.UNSUPPORTED_SAMPLE_RATE: 1008,
    ErrorCode.UNSUPPORTED_FORMAT: 1008,
    ErrorCode.BAD_AUDIO: 1008,
    ErrorCode.MESSAGE_TOO_BIG: 1009,
    ErrorCode.SESSION_TOO_LONG: 1008,
    ErrorCode.TOO_MANY_SESSIONS: 1013,
    ErrorCode.UNAUTHORIZED: 4401,
    ErrorCode.IDLE_TIMEOUT: 4408,
    ErrorCode.SESSION_EXPIRED: 4408,
    ErrorCode.FORBIDDEN: 4403,
    ErrorCode.INTERNAL: 1011,
}


class ProtocolError(Exception):
    """A client mistake that ends the session: sent as an `error` message, then the socket closes."""

    def __init__(self, code: ErrorCode, message: str):
        super().__init__(message)
        self.code = ErrorCode(code)
        self.message = message

    @property
    def close_code(self) -> int:
        return ERROR_CLOSE_CODES[self.code]

    def to_message(self) -> dict:
        return ErrorMessage(code=self.code.value, message=self.message).model_dump()


# -- client -> server -------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Start(_Strict):
    type: Literal["start"]
    sample_rate: int = Field(gt=0, le=384_000)
    # checked against FORMATS by the server, so a wrong one gets its own error code
    format: str = "f32le"
    mode: Literal["stream", "utterances"] = "stream"
    # seeds the session's memory (DPM draws its LoRA init from it): the same key and the same audio
    # give the same predictions, whatever the server-made session id
    key: str = Field(default="live", min_length=1, max_length=128)


class UtteranceHeader(_Strict):
    type: Literal["utterance"]
    speaker: str | None = Field(default=None, max_length=64)
    # seconds in the client's recording; default: back to back after the previous utterance
    start: float | None = Field(default=None, ge=0, le=MAX_TIME_S, allow_inf_nan=False)
    end: float | None = Field(default=None, gt=0, le=MAX_TIME_S, allow_inf_nan=False)

    @model_validator(mode="after")
    def _ordered(self):
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise ValueError(f"end ({self.end}) must be after start ({self.start})")
        return self


class End(_Strict):
    type: Literal["end"]


ClientMessage = Annotated[Union[Start, UtteranceHeader, End], Field(discriminator="type")]
_CLIENT = TypeAdapter(ClientMessage)
CLIENT_TYPES = ("start", "utterance", "end")


def _no_constants(name: str):
    raise ProtocolError(ErrorCode.BAD_JSON, f"text frame is not valid JSON ({name} is not a JSON number)")


def parse_client_message(text: str) -> Start | UtteranceHeader | End:
    """Validate one text frame; raises ProtocolError (bad_json / unknown_type / invalid_message)."""
    try:
        obj = json.loads(text, parse_constant=_no_constants)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProtocolError(ErrorCode.BAD_JSON, f"text frame is not valid JSON ({exc.msg} at char {exc.pos})") from None
    if not isinstance(obj, dict):
        raise ProtocolError(ErrorCode.BAD_JSON, f"text frame must be a JSON object, got {type(obj).__name__}")
    kind = obj.get("type")
    if kind not in CLIENT_TYPES:
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE,
                            f"unknown message type {kind!r}; expected one of {', '.join(CLIENT_TYPES)}")
    try:
        return _CLIENT.validate_python(obj)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:]) or 'message'}: {e['msg']}" for e in exc.errors()
        )
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"bad {kind!r} message: {problems}") from None


# -- server -> client -------------------------------------------------------------------------


class Limits(BaseModel):
    max_message_bytes: int
    max_session_seconds: float  # seconds of audio
    max_session_wall_s: float  # seconds the session may stay open
    idle_timeout_s: float
    idle_progress_s: float  # new audio that counts as progress (module doc)
    sample_rates: list[int]
    formats: list[str]


class Ready(BaseModel):
    type: Literal["ready"] = "ready"
    session: str
    mode: str
    sample_rate: int
    format: str
    memory: str
    labels: list[str]
    limits: Limits


class UtteranceResult(BaseModel):
    type: Literal["utterance"] = "utterance"
    index: int
    start: float
    end: float
    speaker: str | None = None
    emotion: str
    probs: dict[str, float]


class Ended(BaseModel):
    type: Literal["end"] = "end"
    utterances: int
    audio_seconds: float


class ErrorMessage(BaseModel):
    type: Literal["error"] = "error"
    code: str
    message: str


def describe() -> dict:
    """The protocol as data (served at GET /api/protocol): prose, JSON schemas and error codes."""
    return {
        "endpoint": "/ws",
        "description": __doc__,
        "client_messages": {"start": Start.model_json_schema(), "utterance": UtteranceHeader.model_json_schema(),
                            "end": End.model_json_schema()},
        "server_messages": {"ready": Ready.model_json_schema(), "utterance": UtteranceResult.model_json_schema(),
                            "end": Ended.model_json_schema(), "error": ErrorMessage.model_json_schema()},
        "formats": list(FORMATS),
        "errors": {code.value: ERROR_CLOSE_CODES[code] for code in ErrorCode},
    }
