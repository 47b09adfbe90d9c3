"""The live service over FastAPI's TestClient WebSocket: protocol errors, limits, auth, cleanup,
and that sessions never share a memory.

Error paths run against a small fake predictor (no model needed, fast); what depends on the model
(ordering, isolation of two interleaved sessions, cleanup of a real DPM memory) runs against the
real Predictor on the untrained tiny model of tests/model_fixture.py.
"""

from __future__ import annotations

import gc
import json
import threading
import time
import weakref
from dataclasses import dataclass

import numpy as np
import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from convmem.serve.app import create_app
from convmem.serve.sessions import ServeConfig
from tests.serve.conftest import speech

LABELS = ("neu", "hap", "sad", "ang")
# TestClient calls itself http://testserver: a site the service must be told to allow (serve/access.py)
TESTSERVER = ("http://testserver",)


# -- a fake predictor with the Predictor's live API ---------------------------------------------


@dataclass
class FakeEmotion:
    start: float
    end: float
    speaker: str | None
    emotion: str
    probs: dict


class FakeLive:
    """Energy 'VAD': a pushed chunk with RMS > 0.01 is speech, a quieter one ends the utterance.
    Its prediction depends on the session's history, like a memory's would."""

    def __init__(self, owner, key):
        self.owner, self.key = owner, key
        self.t = 0.0  # seconds received
        self.open_start: float | None = None
        self.history = 0.0
        self.closed = False

    def _emotion(self, start, end, wave):
        self.history = 0.5 * self.history + float(np.sqrt(np.mean(wave ** 2)))
        logits = np.array([self.history * k for k in range(1, 5)])
        p = np.exp(logits - logits.max())
        p /= p.sum()
        return FakeEmotion(start, end, None, LABELS[int(p.argmax())], dict(zip(LABELS, p.tolist())))

    def push_audio(self, chunk, sample_rate):
        assert not self.closed
        if self.owner.delay:
            time.sleep(self.owner.delay)
        dur = chunk.size / sample_rate
        out = []
        if np.sqrt(np.mean(chunk ** 2)) > 0.01:
            self.open_start = self.t if self.open_start is None else self.open_start
        elif self.open_start is not None:
            out.append(self._emotion(self.open_start, self.t, chunk))
            self.open_start = None
        self.t += dur
        return out

    def push_utterance(self, wave, sample_rate, start=None, end=None, speaker=None):
        if wave.size < sample_rate // 10:
            raise ValueError(f"utterance of {wave.size} samples is shorter than 0.1 s")
        start = self.t if start is None else start
        self.t = start + wave.size / sample_rate if end is None else end
        r = self._emotion(start, self.t, wave)
        r.speaker = speaker
        return r

    def flush(self):
        if self.open_start is None:
            return []
        r = self._emotion(self.open_start, self.t, np.zeros(1, np.float32))
        self.open_start = None
        return [r]

    def close(self):
        self.closed = True
        self.owner.closed.append(self.key)


class FakePredictor:
    labels = LABELS

    def __init__(self, delay: float = 0.0):
        self.delay = delay
        self.opened: list[str] = []
        self.closed: list[str] = []
        self.lives: list[weakref.ref] = []

    def open_session(self, key):
        live = FakeLive(self, key)
        self.opened.append(key)
        self.lives.append(weakref.ref(live))
        return live


def _client(predictor=None, **cfg) -> tuple[TestClient, FakePredictor]:
    predictor = predictor or FakePredictor()
    app = create_app(lambda: predictor, ServeConfig(**{"allowed_origins": TESTSERVER, **cfg}))
    return TestClient(app), predictor


def _tone(seconds, sr=16000, amp=0.3, freq=220.0):
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype("<f4")


def _start(ws, **kw):
    ws.send_text(json.dumps({"type": "start", "sample_rate": 16000, **kw}))
    msg = ws.receive_json()
    assert msg["type"] == "ready", msg
    return msg


def _expect_error(ws, code: str, close_code: int) -> dict:
    msg = ws.receive_json()
    assert msg["type"] == "error" and msg["code"] == code, msg
    with pytest.raises(WebSocketDisconnect) as info:
        ws.receive_json()
    assert info.value.code == close_code
    return msg


def _registry(client):
    return client.app.state.service.registry


# -- happy paths ---------------------------------------------------------------------------------


def test_stream_mode_reports_each_utterance_when_it_ends():
    client, pred = _client()
    with client, client.websocket_connect("/ws") as ws:
        ready = _start(ws)
        assert ready["labels"] == list(LABELS) and ready["limits"]["max_message_bytes"] == 4 * 1024 * 1024
        ws.send_bytes(_tone(0.5).tobytes())
        ws.send_bytes(_tone(0.5).tobytes())
        ws.send_bytes(np.zeros(8000, "<f4").tobytes())  # the pause ends utterance 0
        u0 = ws.receive_json()
        assert (u0["type"], u0["index"], u0["start"], u0["end"]) == ("utterance", 0, 0.0, 1.0)
        assert abs(sum(u0["probs"].values()) - 1) < 1e-4 and u0["emotion"] in LABELS
        ws.send_bytes(_tone(0.25).tobytes())  # still open when the client ends
        ws.send_text('{"type": "end"}')
        u1 = ws.receive_json()
        assert (u1["index"], u1["start"], u1["end"]) == (1, 1.5, 1.75)
        assert ws.receive_json() == {"type": "end", "utterances": 2, "audio_seconds": 1.75}
        with pytest.raises(WebSocketDisconnect) as info:
            ws.receive_json()
        assert info.value.code == 1000
    assert pred.closed == pred.opened and len(pred.opened) == 1


def test_utterances_mode_s16le_at_another_rate_and_speaker_echo():
    client, pred = _client()
    with client, client.websocket_connect("/ws") as ws:
        _start(ws, mode="utterances", format="s16le", sample_rate=8000)
        pcm = (_tone(0.5, sr=8000) * 32767).astype("<i2")
        for header in ({"speaker": "A"}, {}, {"start": 3.0, "end": 3.5, "speaker": "B"}):
            ws.send_text(json.dumps({"type": "utterance", **header}))
            ws.send_bytes(pcm.tobytes())
        a, b, c = ws.receive_json(), ws.receive_json(), ws.receive_json()
        assert (a["index"], a["speaker"], a["start"], a["end"]) == (0, "A", 0.0, 0.5)
        assert (b["index"], b["speaker"], b["start"], b["end"]) == (1, None, 0.5, 1.0)
        assert (c["index"], c["speaker"], c["start"], c["end"]) == (2, "B", 3.0, 3.5)
        ws.send_text('{"type": "end"}')
        assert ws.receive_json()["utterances"] == 3


def test_page_protocol_and_health():
    client, _ = _client(token="t0ken")
    with client:
        page = client.get("/")
        assert page.status_code == 200 and 'id="file"' in page.text and 'id="mic"' in page.text
        assert client.get("/static/app.js").status_code == 200
        proto = client.get("/api/protocol").json()
        assert proto["auth"] is True and "t0ken" not in json.dumps(proto)
        assert proto["errors"]["too_many_sessions"] == 1013 and proto["limits"]["idle_timeout_s"] == 60.0
        assert client.get("/api/health").json() == {"status": "ok", "sessions": 0, "max_sessions": 8}


# -- malformed input -----------------------------------------------------------------------------


@pytest.mark.parametrize("first, code", [
    ("{oops", "bad_json"),
    ('{"type": "hello"}', "unknown_type"),
    ('{"type": "start", "sample_rate": "x"}', "invalid_message"),
    ('{"type": "end"}', "protocol"),
    ('{"type": "start", "sample_rate": 12345}', "unsupported_sample_rate"),
    ('{"type": "start", "sample_rate": 16000, "format": "mp3"}', "unsupported_format"),
])
def test_bad_first_message(first, code):
    client, pred = _client()
    with client, client.websocket_connect("/ws") as ws:
        ws.send_text(first)
        msg = _expect_error(ws, code, 1008)
        assert msg["message"]
    assert pred.opened == [] and len(_registry(client)) == 0


def test_binary_before_start():
    client, _ = _client()
    with client, client.websocket_connect("/ws") as ws:
        ws.send_bytes(_tone(0.1).tobytes())
        assert "before 'start'" in _expect_error(ws, "protocol", 1008)["message"]


@pytest.mark.parametrize("mode, frames, code", [
    ("stream", [b"\x00\x00\x80"], "bad_audio"),                                 # not whole f32 samples
    ("stream", [np.array([np.inf] * 4, "<f4").tobytes()], "bad_audio"),
    ("stream", ['{"type": "utterance"}'], "protocol"),                            # wrong mode
    ("stream", ['{"type": "start", "sample_rate": 16000}'], "protocol"),          # second start
    ("utterances", [_tone(0.5).tobytes()], "protocol"),                           # audio without header
    ("utterances", ['{"type": "utterance"}', '{"type": "end"}'], "protocol"),     # header without audio
    ("utterances", ['{"type": "utterance"}', _tone(0.01).tobytes()], "bad_audio"),  # predictor refuses it
])
def test_errors_after_start_close_the_session(mode, frames, code):
    client, pred = _client()
    with client, client.websocket_connect("/ws") as ws:
        _start(ws, mode=mode)
        for f in frames:
            ws.send_text(f) if isinstance(f, str) else ws.send_bytes(f)
        _expect_error(ws, code, 1008)
    assert pred.closed == pred.opened and len(_registry(client)) == 0


def test_oversize_frames():
    client, _ = _client(max_message_bytes=4000)
    with client:
        with client.websocket_connect("/ws") as ws:
            _start(ws)
            ws.send_bytes(_tone(0.0625).tobytes())  # exactly 1000 samples = 4000 bytes: fine
            ws.send_bytes(_tone(0.07).tobytes())  # 4480 bytes
            assert "4480 bytes" in _expect_error(ws, "message_too_big", 1009)["message"]
        with client.websocket_connect("/ws") as ws:
            ws.send_text(json.dumps({"type": "start", "sample_rate": 16000, "pad": "x" * 5000}))
            _expect_error(ws, "message_too_big", 1009)


def test_session_length_limit():
    client, pred = _client(max_session_seconds=1.0)
    with client, client.websocket_connect("/ws") as ws:
        _start(ws)
        ws.send_bytes(_tone(0.75).tobytes())
        ws.send_bytes(_tone(0.5).tobytes())
        assert "limit of 1 s" in _expect_error(ws, "session_too_long", 1008)["message"]
    assert pred.closed == pred.opened


def test_idle_timeout_closes_and_frees_the_session():
    client, pred = _client(idle_timeout_s=0.3)
    with client, client.websocket_connect("/ws") as ws:
        _start(ws)
        ws.send_bytes(_tone(0.2).tobytes())
        t0 = time.monotonic()
        _expect_error(ws, "idle_timeout", 4408)
        assert 0.25 < time.monotonic() - t0 < 5
    assert pred.closed == pred.opened and len(_registry(client)) == 0


def test_too_many_sessions_then_a_slot_frees():
    client, pred = _client(max_sessions=2)
    with client:
        with client.websocket_connect("/ws") as a, client.websocket_connect("/ws") as b:
            _start(a)
            _start(b)
            with client.websocket_connect("/ws") as c:
                c.send_text('{"type": "start", "sample_rate": 16000}')
                assert "limit of 2" in _expect_error(c, "too_many_sessions", 1013)["message"]
            assert len(_registry(client)) == 2
        with client.websocket_connect("/ws") as d:
            _start(d)
    assert len(pred.opened) == 3


@pytest.mark.parametrize("how, code", [("none", None), ("header", "wrong"), ("query", "wrong"),
                                       ("header", "secret"), ("query", "secret")])
def test_bearer_token(how, code):
    client, pred = _client(token="secret")
    url = f"/ws?token={code}" if how == "query" else "/ws"
    headers = {"Authorization": f"Bearer {code}"} if how == "header" else {}
    with client, client.websocket_connect(url, headers=headers) as ws:
        if code == "secret":
            _start(ws)
        else:
            ws.send_text('{"type": "start", "sample_rate": 16000}')
            _expect_error(ws, "unauthorized", 4401)
            assert pred.opened == []


# -- cleanup and isolation -----------------------------------------------------------------------


def test_abrupt_disconnect_drops_the_memory():
    client, pred = _client()
    with client, client.websocket_connect("/ws") as ws:
        _start(ws)
        ws.send_bytes(_tone(0.5).tobytes())
        session = next(iter(_registry(client)._sessions.values()))
        live = weakref.ref(session.live)
        del session
        ws.close(1006)  # gone without an `end`
        deadline = time.monotonic() + 5
        while len(_registry(client)) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(_registry(client)) == 0 and pred.closed == pred.opened
        gc.collect()
        assert live() is None, "the session's memory outlived its connection"


def test_event_loop_stays_responsive_while_a_session_computes():
    client, _ = _client(FakePredictor(delay=0.5))
    with client, client.websocket_connect("/ws") as ws:
        _start(ws)
        ws.send_bytes(_tone(0.25).tobytes())  # 0.5 s of 'model work' in a worker thread
        time.sleep(0.05)
        t0 = time.monotonic()
        assert client.get("/api/health").json()["sessions"] == 1
        assert time.monotonic() - t0 < 0.3


def _run_utterances(client, waves, barrier=None, speaker=None) -> list[dict]:
    out = []
    with client.websocket_connect("/ws") as ws:
        _start(ws, mode="utterances")
        for w in waves:
            if barrier is not None:
                barrier.wait(timeout=30)  # both sessions step in lockstep: truly interleaved
            ws.send_text(json.dumps({"type": "utterance", "speaker": speaker}))
            ws.send_bytes(w.astype("<f4").tobytes())
            out.append(ws.receive_json())
        ws.send_text('{"type": "end"}')
        assert ws.receive_json()["type"] == "end"
    return out


def interleaved_equals_alone(client, waves_a, waves_b):
    """Run A alone, B alone, then A and B at once in lockstep from two threads; return both."""
    alone = [_run_utterances(client, waves_a), _run_utterances(client, waves_b)]
    barrier = threading.Barrier(2)
    together: list = [None, None]

    def go(i, waves):
        together[i] = _run_utterances(client, waves, barrier)

    threads = [threading.Thread(target=go, args=(i, w)) for i, w in enumerate((waves_a, waves_b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return alone, together


def test_interleaved_fake_sessions_equal_each_alone():
    client, _ = _client()
    a = [_tone(0.5, amp=x) for x in (0.1, 0.6, 0.2)]
    b = [_tone(0.5, amp=x) for x in (0.9, 0.05, 0.4)]
    with client:
        alone, together = interleaved_equals_alone(client, a, b)
    assert together == alone
    assert alone[0] != alone[1]  # the two conversations do differ


# -- with the real predictor (untrained tiny DPM model) ------------------------------------------


def test_interleaved_dpm_sessions_equal_each_alone(tiny_predictor):
    _, sr, clips = speech(3)
    a = [_resample16k(c, sr) for c in clips]
    b = [_resample16k(c, sr) for c in clips[::-1]]
    client = TestClient(create_app(lambda: tiny_predictor, ServeConfig(allowed_origins=TESTSERVER)))
    with client:
        alone, together = interleaved_equals_alone(client, a, b)
    assert together == alone
    # the memory is the conversation's: utterance k's answer depends on what came before it
    assert alone[0][0]["probs"] != alone[1][2]["probs"]  # same clip, different history
    assert [u["index"] for u in alone[0]] == [0, 1, 2]


def test_stream_session_equals_the_library_timeline(tiny_predictor):
    wave, sr, clips = speech(2)
    client = TestClient(create_app(lambda: tiny_predictor, ServeConfig(allowed_origins=TESTSERVER)))
    got = []
    with client, client.websocket_connect("/ws") as ws:
        _start(ws, sample_rate=sr, key="rec")
        step = sr // 4
        for i in range(0, wave.size, step):
            ws.send_bytes(wave[i: i + step].astype("<f4").tobytes())
        ws.send_text('{"type": "end"}')
        while (msg := ws.receive_json())["type"] == "utterance":
            got.append(msg)
        assert msg == {"type": "end", "utterances": len(clips), "audio_seconds": round(wave.size / sr, 3)}
    want = tiny_predictor.predict(wave, sr, progress=False, key="rec").utterances
    assert [(g["start"], g["end"], g["emotion"]) for g in got] == \
        [(round(u.start, 3), round(u.end, 3), u.emotion) for u in want]
    for g, u in zip(got, want):
        assert g["probs"] == pytest.approx(u.probs, abs=1e-5)


def test_abrupt_disconnect_frees_a_dpm_memory(tiny_predictor):
    _, sr, clips = speech(1)
    client = TestClient(create_app(lambda: tiny_predictor, ServeConfig(allowed_origins=TESTSERVER)))
    with client, client.websocket_connect("/ws") as ws:
        _start(ws, mode="utterances")
        ws.send_text('{"type": "utterance"}')
        ws.send_bytes(_resample16k(clips[0], sr).tobytes())
        assert ws.receive_json()["type"] == "utterance"
        live = next(iter(_registry(client)._sessions.values())).live
        refs = [weakref.ref(live), weakref.ref(live._conv)]
        del live
        ws.close(1001)
        deadline = time.monotonic() + 5
        while len(_registry(client)) and time.monotonic() < deadline:
            time.sleep(0.01)
        gc.collect()
        assert len(_registry(client)) == 0 and [r() for r in refs] == [None, None]


def _resample16k(wave, sr):
    from convmem.audio.io import resample

    return resample(wave, sr, 16000).astype("<f4")


# -- the command -----------------------------------------------------------------------------------


def test_serve_command_bad_model_dir_is_a_clean_error(tmp_path, capsys):
    from convmem.cli import main

    assert main(["serve", str(tmp_path / "nope"), "--port", "0"]) == 2
    assert "not a convmem model directory" in capsys.readouterr().err


@pytest.mark.slow
def test_serve_command_end_to_end(tiny_predictor, tmp_path):
    """`convmem serve` as a process: token from a file, the page, a session, and uvicorn's frame
    cap set above ours so a slightly oversize frame still gets our named error."""
    import os
    import socket
    import subprocess
    import sys

    import httpx
    from websockets.sync.client import connect

    (tmp_path / "token").write_text("s3cret\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "convmem", "serve", str(tiny_predictor.bundle.path), "--port", str(port),
         "--token-file", str(tmp_path / "token"), "--max-message-mb", "0.0625"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "CONVMEM_TOKEN": ""})
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/health").json()["status"] == "ok":
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "convmem serve did not come up"
            time.sleep(0.2)
        assert 'id="timeline"' in httpx.get(f"http://127.0.0.1:{port}/").text
        url = f"ws://127.0.0.1:{port}/ws"
        with connect(url, additional_headers={"Authorization": "Bearer s3cret"}) as ws:
            ws.send('{"type": "start", "sample_rate": 16000}')
            assert json.loads(ws.recv())["type"] == "ready"
            ws.send(_tone(1.1).tobytes())  # 70400 bytes: over our 65536, under uvicorn's cap
            assert json.loads(ws.recv())["code"] == "message_too_big"
        with connect(url) as ws:  # refused before it could say anything
            assert json.loads(ws.recv())["code"] == "unauthorized"
        with connect(f"{url}?token=s3cret") as ws:  # as a browser sends it: never logged
            ws.send('{"type": "start", "sample_rate": 16000}')
            assert json.loads(ws.recv())["type"] == "ready"
    finally:
        proc.terminate()
        out = proc.communicate(timeout=30)[0]
    assert "token required" in out and "s3cret" not in out and "/ws?token=[redacted]" in out
