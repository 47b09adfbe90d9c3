"""Live sessions of `convmem serve`: their limits, their audio decoding and their registry.

A Session wraps one predictor LiveSession (one conversation, one test-time memory). The registry
caps how many exist at once and forgets a session the moment it closes: the LiveSession is
closed (its memory dropped) and no reference to it stays behind, so nothing a client said
outlives its connection (the privacy concern of the DPM paper: a conversation's memory is
temporary). Audio is decoded in memory and never written anywhere.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from convmem.serve.protocol import FORMATS, ErrorCode, ProtocolError, Start

# Rates a client may declare; the predictor resamples them to the model's 16 kHz. Anything else is
# refused rather than guessed at: an odd rate is far more often a client bug than a real device.
DEFAULT_SAMPLE_RATES = (8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000)
MAX_TEXT_BYTES = 64 * 1024  # JSON control messages are tiny; a huge one is a bug or an attack


@dataclass
class ServeConfig:
    """Limits and behaviour of the live service (every limit gives the client a named error)."""

    max_sessions: int = 8  # concurrent sessions; one more gets `too_many_sessions` (close 1013)
    max_message_bytes: int = 4 * 1024 * 1024  # one frame; ~65 s of f32le 16 kHz audio
    max_session_seconds: float = 3600.0  # seconds of audio one session may send
    # Wall-clock life of a session, whatever it sends (close 4408): without it a client that
    # trickles audio could hold a slot for weeks. Two hours covers any meeting worth a memory.
    max_session_wall_s: float = 7200.0
    idle_timeout_s: float = 60.0  # this long without progress ends the session (close 4408)
    token: str | None = None  # bearer token; None = open service
    memory: str = "dpm"  # test-time memory method of every session (Bundle.methods)
    sample_rates: tuple[int, ...] = DEFAULT_SAMPLE_RATES
    host: str = "127.0.0.1"  # the address the server is bound to (Host checks, serve/access.py)
    allowed_origins: tuple[str, ...] = ()  # web origins allowed besides the same origin and loopback

    def __post_init__(self) -> None:
        from convmem.errors import ConfigError
        from convmem.serve.access import normalize_origin

        for name in ("max_sessions", "max_message_bytes"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"serve.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_session_seconds", "idle_timeout_s", "max_session_wall_s"):
            if not 0 < float(getattr(self, name)) < float("inf"):
                raise ConfigError(f"serve.{name} must be > 0 and finite, got {getattr(self, name)}")
        self.allowed_origins = tuple(normalize_origin(o) for o in self.allowed_origins)
        if self.token is not None and not self.token.strip():
            raise ConfigError("serve.token is empty; give a real token or none")
        if not self.sample_rates:
            raise ConfigError("serve.sample_rates is empty: no client could start a session")
        self.sample_rates = tuple(sorted({int(r) for r in self.sample_rates}))

    @property
    def idle_progress_s(self) -> float:
        """New audio that restarts the idle timer: 1 s, or half the timeout when that is shorter,
        so a client streaming at even a small fraction of real time always makes it, while one
        that trickles a few bytes never does (4 bytes every 4 s is 1/64000 of real time)."""
        return min(1.0, self.idle_timeout_s / 2)


class SessionClock:
    """When a connection must end: at `max_session_wall_s` after it opened, whatever happens, and
    `idle_timeout_s` after its last progress (`progress`: new audio of at least idle_progress_s,
    or a classified utterance). Time the server spends on the session's model calls is not the
    client's idleness, so `pause()` holds the idle deadline while the server works."""

    def __init__(self, config: ServeConfig, now: Callable[[], float]):
        self.config, self._now = config, now
        opened = now()
        self.expires = opened + config.max_session_wall_s
        self.idle_deadline = opened + config.idle_timeout_s
        self._pending_audio = 0.0

    def audio(self, seconds: float) -> None:
        self._pending_audio += seconds
        if self._pending_audio >= self.config.idle_progress_s:
            self.progress()

    def progress(self) -> None:
        self._pending_audio = 0.0
        self.idle_deadline = self._now() + self.config.idle_timeout_s

    def pause(self, seconds: float) -> None:
        self.idle_deadline += seconds

    def next_deadline(self) -> tuple[float, ErrorCode]:
        """(seconds left, the error to end with when they run out)."""
        now = self._now()
        if self.expires <= self.idle_deadline:
            return self.expires - now, ErrorCode.SESSION_EXPIRED
        return self.idle_deadline - now, ErrorCode.IDLE_TIMEOUT


@dataclass(eq=False)
class Session:
    """One open conversation: its LiveSession, wire format and how much audio it has sent."""

    id: str
    live: Any  # predictor LiveSession; None once closed
    start: Start
    config: ServeConfig
    audio_seconds: float = 0.0
    utterances: int = 0
    # serialises work on `live`: a push running in a worker thread and close() never overlap,
    # and one session's utterances are processed strictly in the order they arrived
    lock: threading.Lock = field(default_factory=threading.Lock)

    def decode(self, data: bytes) -> np.ndarray:
        """Bytes of one binary frame -> float32[n] mono samples; enforces the session-length limit."""
        fmt = self.start.format
        width = np.dtype(FORMATS[fmt]).itemsize
        if len(data) == 0:
            raise ProtocolError(ErrorCode.BAD_AUDIO, "empty binary frame")
        if len(data) % width:
            raise ProtocolError(ErrorCode.BAD_AUDIO,
                                f"binary frame of {len(data)} bytes is not whole {fmt} samples ({width} bytes each)")
        wave = np.frombuffer(data, dtype=FORMATS[fmt])
        wave = wave.astype(np.float32) / 32768.0 if fmt == "s16le" else wave.astype(np.float32)
        if not np.isfinite(wave).all():
            raise ProtocolError(ErrorCode.BAD_AUDIO, "audio frame contains NaN or infinite samples")
        seconds = wave.size / self.start.sample_rate
        if self.audio_seconds + seconds > self.config.max_session_seconds:
            raise ProtocolError(
                ErrorCode.SESSION_TOO_LONG,
                f"session audio would reach {self.audio_seconds + seconds:.1f} s, over the limit of "
                f"{self.config.max_session_seconds:g} s; start a new session",
            )
        self.audio_seconds += seconds
        return wave

    def run(self, method: str, *args, **kw):
        """Call `live.<method>(*args, **kw)` under the session lock (meant for a worker thread)."""
        with self.lock:
            if self.live is None:
                raise RuntimeError(f"session {self.id} is closed")
            return getattr(self.live, method)(*args, **kw)

    def close(self) -> None:
        """Drop the memory; idempotent. Waits for a push in flight to finish first."""
        with self.lock:
            live, self.live = self.live, None
        if live is not None:
            live.close()


class SessionRegistry:
    """The open sessions, at most `config.max_sessions` of them."""

    def __init__(self, config: ServeConfig):
        self.config = config
        self._sessions: dict[str, Session] = {}
        self._reserved = 0  # slots taken by sessions whose LiveSession is still being built
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)

    def get(self, session_id: str) -> Session | None:
        with self._lock:
            return self._sessions.get(session_id)

    def check_start(self, start: Start) -> None:
        """Refuse a start message the service cannot honour (format, sample rate)."""
        if start.format not in FORMATS:
            raise ProtocolError(ErrorCode.UNSUPPORTED_FORMAT,
                                f"format {start.format!r} is not supported; use one of {', '.join(FORMATS)}")
        if start.sample_rate not in self.config.sample_rates:
            rates = ", ".join(str(r) for r in self.config.sample_rates)
            raise ProtocolError(ErrorCode.UNSUPPORTED_SAMPLE_RATE,
                                f"sample_rate {start.sample_rate} Hz is not accepted; use one of {rates} Hz "
                                "(the server resamples them to 16 kHz)")

    def open(self, start: Start, open_live: Callable[[str], Any]) -> Session:
        """Reserve a slot, then build the LiveSession with `open_live(start.key)` (may be slow,
        so it runs outside the lock). Raises ProtocolError(too_many_sessions) when full.
        The memory is keyed by the client's key, never by the random session id, so predictions
        do not depend on which session id a connection happened to get."""
        self.check_start(start)
        with self._lock:
            if len(self._sessions) + self._reserved >= self.config.max_sessions:
                raise ProtocolError(ErrorCode.TOO_MANY_SESSIONS,
                                    f"the server is at its limit of {self.config.max_sessions} concurrent "
                                    "sessions; try again later")
            self._reserved += 1
        session_id = secrets.token_urlsafe(9)
        try:
            live = open_live(start.key)
        finally:
            with self._lock:
                self._reserved -= 1
        session = Session(id=session_id, live=live, start=start, config=self.config)
        with self._lock:
            self._sessions[session_id] = session
        return session

    def close(self, session: Session) -> None:
        """Close the session's memory and forget it; idempotent. The memory is dropped before the
        session leaves the registry, so a registry without the session never still holds its memory."""
        session.close()
        with self._lock:
            self._sessions.pop(session.id, None)

    def close_all(self) -> None:
        with self._lock:
            sessions, self._sessions = list(self._sessions.values()), {}
        for s in sessions:
            s.close()
