"""The live service against hostile pages and slow clients, over a real uvicorn server on 127.0.0.1
with a real WebSocket client: the token never reaches the log, other sites' pages and rebound
host names are refused, trickling clients lose their slot, times are finite, and a streamed
session leaves no file behind (onnxruntime's telemetry store included)."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from convmem.serve.app import BackgroundServer, create_app
from convmem.serve.sessions import ServeConfig
from tests.serve.test_app import FakePredictor, _tone

START = json.dumps({"type": "start", "sample_rate": 16000})


@pytest.fixture
def serve():
    """Factory: a server for `ServeConfig(**cfg)` around a fake predictor; stopped afterwards."""
    servers = []

    def start(predictor=None, log_level="warning", **cfg) -> BackgroundServer:
        predictor = predictor or FakePredictor()
        srv = BackgroundServer(create_app(lambda: predictor, ServeConfig(**cfg)), log_level=log_level)
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.stop()


def _ws(srv, path="/ws", **kw):
    return connect(srv.url.replace("http", "ws", 1) + path, open_timeout=10, **kw)


def _refusal(ws) -> tuple[dict, int, str]:
    """The server's error message, then its close code and reason."""
    msg = json.loads(ws.recv(timeout=10))
    with pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=10)
    return msg, closed.value.rcvd.code, closed.value.rcvd.reason


def _ready(ws, start=START) -> dict:
    ws.send(start)
    msg = json.loads(ws.recv(timeout=10))
    assert msg["type"] == "ready", msg
    return msg


def _last_error(ws) -> tuple[dict, int, str]:
    """The last text frame the server sent before it closed, and its close code and reason."""
    msg = None
    while True:
        try:
            frame = ws.recv(timeout=5)
        except ConnectionClosed as closed:
            return msg, closed.rcvd.code, closed.rcvd.reason
        if isinstance(frame, str):
            msg = json.loads(frame)


# -- 1. the token in the URL never reaches the log ----------------------------------------------


def test_query_token_is_redacted_from_every_log_line(serve):
    srv = serve(token="s3cr3t-token-123", log_level="info")
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())

    keep = Keep()
    loggers = [logging.getLogger(n) for n in ("uvicorn", "uvicorn.access")]  # uvicorn.error propagates to uvicorn
    for lg in loggers:
        lg.addHandler(keep)
    try:
        with _ws(srv, "/ws?token=s3cr3t-token-123") as ws:
            _ready(ws)
        httpx.get(f"{srv.url}/api/health?token=s3cr3t-token-123&x=1")
        time.sleep(0.3)  # uvicorn logs the closing handshake from its own thread
    finally:
        for lg in loggers:
            lg.removeHandler(keep)
    assert any("WebSocket /ws?token=[redacted]" in line for line in lines), lines
    assert any("/api/health?token=[redacted]&x=1" in line for line in lines), lines
    assert not [line for line in lines if "s3cr3t" in line]


# -- 2. other sites' pages and rebound host names ------------------------------------------------


@pytest.mark.parametrize("origin", ["http://evil.example", "null", "https://127.0.0.1.evil.example"])
def test_pages_of_other_sites_are_refused(serve, origin):
    srv = serve()
    with _ws(srv, origin=origin) as ws:
        msg, code, reason = _refusal(ws)
    assert (msg["type"], msg["code"], code) == ("error", "forbidden", 4403)
    assert f"pages from {origin} may not use this service" in msg["message"] and reason.startswith("pages from")
    assert len(srv._server.config.app.state.service.registry) == 0


def test_own_page_loopback_pages_and_allowed_origins_are_served(serve):
    srv = serve(allowed_origins=("https://app.example.org",))
    for origin in (srv.url, f"http://localhost:{srv.port}", "http://localhost:5173", "https://app.example.org", None):
        with _ws(srv, origin=origin) as ws:
            _ready(ws)
    with _ws(srv, origin="https://other.example.org") as ws:
        assert _refusal(ws)[0]["code"] == "forbidden"


def test_dns_rebinding_host_names_are_refused(serve):
    srv = serve()
    for path in ("/api/protocol", "/", "/static/app.js"):
        r = httpx.get(srv.url + path, headers={"Host": "evil.example"})
        assert r.status_code == 403 and "is not this server's name" in r.text, path
    assert httpx.get(srv.url + "/api/protocol", headers={"Host": f"localhost:{srv.port}"}).status_code == 200
    # a WebSocket to a rebound name: the client believes it talks to evil.example
    sock = socket.create_connection(("127.0.0.1", srv.port))
    with connect(f"ws://evil.example:{srv.port}/ws", sock=sock, open_timeout=10) as ws:
        msg, code, _ = _refusal(ws)
    assert (msg["code"], code) == ("forbidden", 4403)


def test_bad_allow_origin_is_a_config_error():
    from convmem.errors import ConfigError

    with pytest.raises(ConfigError, match="expected scheme://host"):
        ServeConfig(allowed_origins=("app.example.org/path",))


# -- 3. slow clients cannot hold the slots -------------------------------------------------------


def test_trickling_clients_lose_their_slots(serve):
    """Two clients sending 4 bytes every 0.2 s held both slots forever (the idle timer restarted
    on every message); only progress restarts it now, so they are closed and a third is served."""
    srv = serve(max_sessions=2, idle_timeout_s=1.0)
    ended: dict[int, tuple] = {}

    def trickle(i):
        with _ws(srv) as ws:
            _ready(ws)
            stop = time.monotonic() + 8
            try:
                while time.monotonic() < stop:
                    ws.send(b"\x00\x00\x00\x00")
                    time.sleep(0.2)
            except ConnectionClosed:
                pass
            ended[i] = _last_error(ws)

    threads = [threading.Thread(target=trickle, args=(i,)) for i in range(2)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    time.sleep(0.3)
    with _ws(srv) as ws:  # both slots are taken meanwhile
        ws.send(START)
        assert _refusal(ws)[0]["code"] == "too_many_sessions"
    for t in threads:
        t.join(15)
    assert time.monotonic() - t0 < 6, "the trickling clients kept their slots"
    assert [(ended[i][0]["code"], ended[i][1]) for i in range(2)] == [("idle_timeout", 4408)] * 2
    assert all("no progress for 1 s" in e[2] for e in ended.values())
    with _ws(srv) as ws:
        _ready(ws)


def test_a_client_streaming_in_real_time_is_never_idle(serve):
    srv = serve(idle_timeout_s=0.6)
    with _ws(srv) as ws:
        _ready(ws)
        t_end = time.monotonic() + 2.0
        while time.monotonic() < t_end:  # 0.1 s of audio every 0.1 s: a microphone
            ws.send(np.zeros(1600, "<f4").tobytes())
            time.sleep(0.1)
        ws.send('{"type": "end"}')
        assert json.loads(ws.recv(timeout=10))["type"] == "end"


def test_a_session_ends_at_its_wall_clock_limit(serve):
    srv = serve(max_session_wall_s=1.0)
    with _ws(srv) as ws:
        ready = _ready(ws)
        assert ready["limits"]["max_session_wall_s"] == 1.0 and ready["limits"]["idle_progress_s"] == 1.0
        t0 = time.monotonic()
        try:
            while time.monotonic() - t0 < 5:
                ws.send(_tone(0.1).tobytes())
                time.sleep(0.05)
        except ConnectionClosed:
            pass
        msg, code, reason = _last_error(ws)
    assert (msg["code"], code) == ("session_expired", 4408) and "open for 1 s" in msg["message"]
    assert time.monotonic() - t0 < 3


# -- 4. times are finite, utterances long enough ------------------------------------------------


@pytest.mark.parametrize("header, code", [
    ('{"type": "utterance", "start": 1e308, "end": Infinity}', "bad_json"),
    ('{"type": "utterance", "start": 0, "end": NaN}', "bad_json"),
    ('{"type": "utterance", "start": 0, "end": 1e309}', "invalid_message"),  # json reads it as inf
    ('{"type": "utterance", "start": 1e308}', "invalid_message"),
])
def test_non_finite_or_huge_times_are_refused(serve, header, code):
    srv = serve()
    with _ws(srv) as ws:
        _ready(ws, json.dumps({"type": "start", "sample_rate": 16000, "mode": "utterances"}))
        ws.send(header)  # refused as it arrives, before any audio
        raw = ws.recv(timeout=10)
    msg = json.loads(raw, parse_constant=lambda c: pytest.fail(f"the server sent {c}, not JSON: {raw}"))
    assert msg["code"] == code, raw


def test_a_four_sample_utterance_is_refused_not_classified(serve, tiny_predictor):
    srv = serve(predictor=tiny_predictor)
    with _ws(srv) as ws:
        _ready(ws, json.dumps({"type": "start", "sample_rate": 16000, "mode": "utterances"}))
        ws.send('{"type": "utterance"}')
        ws.send(_tone(0.5)[:4].tobytes())
        msg, code, _ = _refusal(ws)
    assert (msg["code"], code) == ("bad_audio", 1008)
    assert "utterance 0: utterance of 4 samples (0.000 s) is shorter than the shortest one classified" in msg["message"]


# -- 5. nothing written to disk ----------------------------------------------------------------


_SESSION_SCRIPT = """
import json, sys
import numpy as np
from websockets.sync.client import connect
from convmem.predict import Predictor
from convmem.serve.app import BackgroundServer, create_app
from convmem.serve.sessions import ServeConfig

model, audio = sys.argv[1], sys.argv[2]
predictor = Predictor.load(model, memory="dpm")
assert predictor.vad.backend == "auto"
srv = BackgroundServer(create_app(lambda: predictor, ServeConfig()))
wave = np.load(audio)
with connect(srv.url.replace("http", "ws", 1) + "/ws") as ws:
    ws.send(json.dumps({"type": "start", "sample_rate": 16000}))
    assert json.loads(ws.recv())["type"] == "ready"
    for i in range(0, wave.size, 4000):
        ws.send(wave[i:i + 4000].tobytes())
    ws.send('{"type": "end"}')
    got = [json.loads(ws.recv()) for _ in range(3)]
srv.stop()
import onnxruntime  # the VAD ran on it
print(json.dumps({"messages": [m["type"] for m in got]}))
"""


def test_a_streamed_session_writes_no_file_under_home_or_the_working_tree(tiny_predictor, tmp_path):
    """onnxruntime's official wheels write a telemetry store under ~/.cache on import unless
    convmem turns it off; nothing else may be written either."""
    from convmem.audio.vad import resolve_backend
    from tests.serve.conftest import speech

    assert resolve_backend("auto") == "onnx"
    wave, sr, _ = speech(2)
    from convmem.audio.io import resample

    audio = tmp_path / "speech.npy"
    np.save(audio, resample(wave, sr, 16000).astype("<f4"))
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    import convmem

    src = Path(convmem.__file__).resolve().parents[1]  # the convmem under test
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "ORT_", "HF_", "TORCH", "MPL"))}
    env.update(HOME=str(home), PYTHONPATH=os.pathsep.join([str(src), env.get("PYTHONPATH", "")]))
    res = subprocess.run([sys.executable, "-c", _SESSION_SCRIPT, str(tiny_predictor.bundle.path), str(audio)],
                         cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads(res.stdout.strip().splitlines()[-1])["messages"] == ["utterance", "utterance", "end"]
    written = sorted(str(p.relative_to(tmp_path)) for p in [*home.rglob("*"), *work.rglob("*")])
    assert written == []
