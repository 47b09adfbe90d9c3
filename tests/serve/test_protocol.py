"""Message schema and error codes of the live service (no sockets, no model)."""

from __future__ import annotations

import json

import pytest

from convmem.serve.protocol import (
    ERROR_CLOSE_CODES,
    ErrorCode,
    ProtocolError,
    Start,
    UtteranceHeader,
    describe,
    parse_client_message,
)


def _code(text: str) -> ErrorCode:
    with pytest.raises(ProtocolError) as info:
        parse_client_message(text)
    return info.value.code


def test_valid_messages_parse_with_defaults():
    m = parse_client_message('{"type": "start", "sample_rate": 22050}')
    assert isinstance(m, Start) and m.sample_rate == 22050 and m.format == "f32le" and m.mode == "stream"
    u = parse_client_message('{"type": "utterance", "speaker": "A"}')
    assert isinstance(u, UtteranceHeader) and u.speaker == "A"
    assert parse_client_message('{"type": "end"}').type == "end"


@pytest.mark.parametrize("text, code", [
    ("{not json", ErrorCode.BAD_JSON),
    ("[1, 2]", ErrorCode.BAD_JSON),
    ('"start"', ErrorCode.BAD_JSON),
    ('{"sample_rate": 16000}', ErrorCode.UNKNOWN_TYPE),
    ('{"type": "stop"}', ErrorCode.UNKNOWN_TYPE),
    ('{"type": "start"}', ErrorCode.INVALID_MESSAGE),                                   # no sample_rate
    ('{"type": "start", "sample_rate": "fast"}', ErrorCode.INVALID_MESSAGE),
    ('{"type": "start", "sample_rate": -8000}', ErrorCode.INVALID_MESSAGE),
    ('{"type": "start", "sample_rate": 16000, "mode": "batch"}', ErrorCode.INVALID_MESSAGE),
    ('{"type": "start", "sample_rate": 16000, "volume": 3}', ErrorCode.INVALID_MESSAGE),  # unknown field
    ('{"type": "utterance", "speaker": "' + "x" * 65 + '"}', ErrorCode.INVALID_MESSAGE),
    ('{"type": "utterance", "start": 2.0, "end": 1.5}', ErrorCode.INVALID_MESSAGE),
    ('{"type": "utterance", "start": -1}', ErrorCode.INVALID_MESSAGE),
    ('{"type": "start", "sample_rate": 16000, "key": ""}', ErrorCode.INVALID_MESSAGE),
])
def test_malformed_messages_get_their_error_code(text, code):
    assert _code(text) == code


def test_invalid_message_names_the_field():
    with pytest.raises(ProtocolError) as info:
        parse_client_message('{"type": "start", "sample_rate": 16000, "mode": "batch"}')
    assert "mode" in info.value.message and "'start'" in info.value.message


def test_every_error_code_has_a_close_code_and_policy_codes_are_right():
    assert set(ERROR_CLOSE_CODES) == set(ErrorCode)
    assert ProtocolError(ErrorCode.MESSAGE_TOO_BIG, "x").close_code == 1009
    assert ProtocolError(ErrorCode.TOO_MANY_SESSIONS, "x").close_code == 1013
    assert ProtocolError(ErrorCode.UNAUTHORIZED, "x").close_code == 4401
    assert ProtocolError(ErrorCode.BAD_JSON, "x").to_message() == {"type": "error", "code": "bad_json", "message": "x"}


def test_describe_is_json_and_lists_every_code():
    d = json.loads(json.dumps(describe()))
    assert d["endpoint"] == "/ws"
    assert set(d["errors"]) == {c.value for c in ErrorCode}
    assert set(d["client_messages"]) == {"start", "utterance", "end"}
    assert "sample_rate" in d["client_messages"]["start"]["properties"]
