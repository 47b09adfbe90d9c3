"""Live sessions: config checks, audio decoding, the session-length limit and the registry."""

from __future__ import annotations

import numpy as np
import pytest

from convmem.errors import ConfigError
from convmem.serve.protocol import ErrorCode, ProtocolError, Start
from convmem.serve.sessions import ServeConfig, Session, SessionRegistry


@pytest.mark.parametrize("kw", [{"max_sessions": 0}, {"max_message_bytes": 0}, {"idle_timeout_s": 0},
                                {"max_session_seconds": -1}, {"token": " "}, {"sample_rates": ()}])
def test_config_rejects_impossible_limits(kw):
    with pytest.raises(ConfigError):
        ServeConfig(**kw)


def _session(fmt="f32le", sr=16000, **cfg) -> Session:
    return Session(id="s", live=None, start=Start(type="start", sample_rate=sr, format=fmt), config=ServeConfig(**cfg))


def test_decode_formats():
    x = np.array([0.5, -0.25, 0.0], np.float32)
    assert np.array_equal(_session().decode(x.astype("<f4").tobytes()), x)
    s16 = np.array([16384, -8192, 0], "<i2").tobytes()
    assert np.array_equal(_session("s16le").decode(s16), x)


@pytest.mark.parametrize("data, why", [
    (b"", "empty"),
    (b"\x00" * 6, "whole f32le samples"),
    (np.array([0.1, np.nan], "<f4").tobytes(), "NaN"),
])
def test_decode_rejects_bad_audio(data, why):
    with pytest.raises(ProtocolError) as info:
        _session().decode(data)
    assert info.value.code == ErrorCode.BAD_AUDIO and why in info.value.message


def test_session_length_limit_counts_audio_seconds():
    s = _session(sr=8000, max_session_seconds=1.0)
    s.decode(np.zeros(6000, "<f4").tobytes())  # 0.75 s
    with pytest.raises(ProtocolError) as info:
        s.decode(np.zeros(4000, "<f4").tobytes())  # would be 1.25 s
    assert info.value.code == ErrorCode.SESSION_TOO_LONG and "1.2 s" in info.value.message
    assert s.audio_seconds == pytest.approx(0.75)  # the refused frame is not counted


class _Live:
    closed = 0

    def close(self):
        _Live.closed += 1


def test_registry_limit_format_rate_and_close():
    reg = SessionRegistry(ServeConfig(max_sessions=2, sample_rates=(16000, 48000)))
    ok = Start(type="start", sample_rate=48000)
    for bad, code in [(Start(type="start", sample_rate=16000, format="mp3"), ErrorCode.UNSUPPORTED_FORMAT),
                      (Start(type="start", sample_rate=44100), ErrorCode.UNSUPPORTED_SAMPLE_RATE)]:
        with pytest.raises(ProtocolError) as info:
            reg.open(bad, lambda key: _Live())
        assert info.value.code == code
    a = reg.open(ok, lambda key: _Live())
    b = reg.open(ok, lambda key: _Live())
    assert a.id != b.id and len(reg) == 2
    with pytest.raises(ProtocolError) as info:
        reg.open(ok, lambda key: _Live())
    assert info.value.code == ErrorCode.TOO_MANY_SESSIONS
    before = _Live.closed
    reg.close(a)
    reg.close(a)  # idempotent: closes the memory once
    assert _Live.closed == before + 1 and len(reg) == 1 and reg.get(a.id) is None
    reg.open(ok, lambda key: _Live())  # the slot is free again
    with pytest.raises(RuntimeError, match="closed"):
        a.run("push_audio")


def test_registry_frees_the_slot_when_opening_fails():
    reg = SessionRegistry(ServeConfig(max_sessions=1))

    def boom(key):
        raise RuntimeError("model broke")

    with pytest.raises(RuntimeError):
        reg.open(Start(type="start", sample_rate=16000), boom)
    assert len(reg) == 0
    reg.open(Start(type="start", sample_rate=16000), lambda key: _Live())


def test_close_all_closes_every_memory():
    reg = SessionRegistry(ServeConfig(max_sessions=3))
    before = _Live.closed
    sessions = [reg.open(Start(type="start", sample_rate=16000), lambda key: _Live()) for _ in range(3)]
    reg.close_all()
    assert len(reg) == 0 and _Live.closed == before + 3 and all(s.live is None for s in sessions)


def test_memory_is_keyed_by_the_client_key_not_the_session_id():
    reg = SessionRegistry(ServeConfig())
    keys = []
    reg.open(Start(type="start", sample_rate=16000), lambda key: keys.append(key) or _Live())
    reg.open(Start(type="start", sample_rate=16000, key="meeting-7"), lambda key: keys.append(key) or _Live())
    assert keys == ["live", "meeting-7"]
