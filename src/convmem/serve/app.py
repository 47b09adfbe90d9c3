"""The FastAPI app of `convmem serve`: the WebSocket API (serve/protocol.py), a page, and health.

Model work is CPU-bound, so every predictor call runs in a worker thread while the event loop
keeps reading sockets and timing out idle sessions. Model calls of all sessions run one at a
time (a global CapacityLimiter of 1): the test-time memories attach each conversation's adapter
to the one shared model through forward hooks (memory/batched_lora.py), so two forwards at once
would read each other's memory. The cores are used by torch's intra-op threads instead. Each
connection handles its own messages one after the other, so a session's utterances come back
in the order they were sent.

Who may connect: every HTTP request's Host and every WebSocket's Origin are checked
(serve/access.py) against DNS rebinding and cross-site use by other web pages; the token, which
browsers send in the URL, is redacted from every log line (serve/log_redact.py). How long a
session may hold one of the `max_sessions` slots: SessionClock (serve/sessions.py).
"""

from __future__ import annotations

import contextlib
import functools
import hmac
import json
import logging
import time
from pathlib import Path
from typing import Any, Callable

import anyio
import anyio.to_thread
from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles

from convmem.serve import log_redact
from convmem.serve.access import AccessPolicy
from convmem.serve.protocol import (
    FORMATS,
    Ended,
    ErrorCode,
    Limits,
    ProtocolError,
    Ready,
    Start,
    UtteranceHeader,
    UtteranceResult,
    describe,
    parse_client_message,
)
from convmem.serve.sessions import MAX_TEXT_BYTES, ServeConfig, Session, SessionClock, SessionRegistry

log = logging.getLogger("convmem.serve")
STATIC = Path(__file__).parent / "static"


class _Service:
    """What the endpoints share: config, the predictor (loaded at startup), registry, limiter."""

    def __init__(self, source: str | Path | Callable[[], Any], config: ServeConfig):
        self.config = config
        self.access = AccessPolicy(config.host, config.allowed_origins)
        self.registry = SessionRegistry(config)
        self.predictor: Any = None
        self._limiter: anyio.CapacityLimiter | None = None
        if callable(source):
            self._factory = source
        else:
            path = Path(source)

            def _load():
                from convmem.predict import Predictor

                return Predictor.load(path, memory=config.memory)

            self._factory = _load

    async def ensure_loaded(self) -> Any:
        if self.predictor is None:
            self.predictor = await anyio.to_thread.run_sync(self._factory)
        return self.predictor

    @property
    def limiter(self) -> anyio.CapacityLimiter:
        # made lazily so that it belongs to the running event loop; 1: see the module doc
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(1)
        return self._limiter

    async def work(self, session: Session, clock: SessionClock, method: str, *args, **kw):
        """Run `session.live.<method>(*args, **kw)` in a worker thread. Not abandoned on
        cancellation: a disconnect waits for the call to end, so close() never races a running
        push. The predictor's refusals of the audio (AudioError, ValueError) become `bad_audio`.
        The time it takes (queueing behind other sessions included) is the server's, not the
        client's idleness: the session's idle deadline moves by as much."""
        from convmem.errors import ConvmemError

        t0 = time.monotonic()
        try:
            return await anyio.to_thread.run_sync(functools.partial(session.run, method, *args, **kw),
                                                  limiter=self.limiter)
        except (ConvmemError, ValueError) as exc:
            where = f"utterance {session.utterances}: " if method == "push_utterance" else ""
            raise ProtocolError(ErrorCode.BAD_AUDIO, f"{where}{exc}") from None
        finally:
            clock.pause(time.monotonic() - t0)

    def labels(self) -> list[str]:
        return [str(x) for x in getattr(self.predictor, "labels", ())]

    def limits(self) -> Limits:
        c = self.config
        return Limits(max_message_bytes=c.max_message_bytes, max_session_seconds=c.max_session_seconds,
                      max_session_wall_s=c.max_session_wall_s, idle_timeout_s=c.idle_timeout_s,
                      idle_progress_s=c.idle_progress_s, sample_rates=list(c.sample_rates),
                      formats=list(FORMATS))


def create_app(source: str | Path | Callable[[], Any], config: ServeConfig | None = None) -> FastAPI:
    """The service app. `source` is a model directory (loaded with `Predictor.load(dir,
    memory=config.memory)`) or a zero-argument factory returning an object with the Predictor's
    `open_session(key) -> LiveSession` (tests pass fakes). The predictor loads at startup."""
    config = config or ServeConfig()
    service = _Service(source, config)
    log_redact.install()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await service.ensure_loaded()
        log.info("convmem serve: model ready (memory=%s, max_sessions=%d, auth=%s)", config.memory,
                 config.max_sessions, "token" if config.token else "open")
        try:
            yield
        finally:
            service.registry.close_all()

    app = FastAPI(title="convmem serve", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.service = service
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.middleware("http")
    async def check_host(request: Request, call_next):
        # every HTTP answer, the page and /static included: a rebinding page must read none of them
        problem = service.access.host_problem(request.headers.get("host"))
        if problem is not None:
            log.info("refused %s %s: %s", request.method, request.url.path, problem)
            return PlainTextResponse(problem, status_code=403)
        return await call_next(request)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/api/protocol")
    async def protocol() -> dict:
        return {**describe(), "limits": service.limits().model_dump(), "auth": bool(config.token),
                "memory": config.memory, "labels": service.labels()}

    @app.get("/api/health")
    async def health() -> dict:
        return {"status": "ok" if service.predictor is not None else "loading",
                "sessions": len(service.registry), "max_sessions": config.max_sessions}

    @app.websocket("/ws")
    async def ws_endpoint(ws: WebSocket) -> None:
        await ws.accept()
        session: Session | None = None
        clock = SessionClock(config, time.monotonic)
        try:
            # accepted first, so that a refused page learns why (error message, close reason)
            for problem in (service.access.host_problem(ws.headers.get("host")),
                            service.access.origin_problem(ws.headers.get("origin"), ws.headers.get("host"))):
                if problem is not None:
                    raise ProtocolError(ErrorCode.FORBIDDEN, problem)
            _authorize(ws, config.token)
            await service.ensure_loaded()
            start = await _receive_start(ws, config, clock)
            # building a memory touches the shared model too: same lane as the model calls
            session = await anyio.to_thread.run_sync(
                service.registry.open, start, service.predictor.open_session, limiter=service.limiter)
            log.info("session %s opened (%s, %d Hz, %s)", session.id, start.mode, start.sample_rate, start.format)
            await _send(ws, Ready(session=session.id, mode=start.mode, sample_rate=start.sample_rate,
                                  format=start.format, memory=config.memory, labels=service.labels(),
                                  limits=service.limits()))
            await _converse(ws, service, session, clock)
            await ws.close(1000)
        except ProtocolError as err:
            log.info("session %s: %s: %s", session.id if session else "-", err.code.value, err.message)
            await _send_error(ws, err)
        except WebSocketDisconnect:
            log.info("session %s: client disconnected", session.id if session else "-")
        except Exception:
            log.exception("session %s: internal error", session.id if session else "-")
            await _send_error(ws, ProtocolError(ErrorCode.INTERNAL, "internal server error; session closed"))
        finally:
            if session is not None:
                service.registry.close(session)
                log.info("session %s closed after %d utterances, %.1f s of audio", session.id,
                         session.utterances, session.audio_seconds)

    return app


def _authorize(ws: WebSocket, token: str | None) -> None:
    if token is None:
        return
    header = ws.headers.get("authorization", "")
    given = header[7:].strip() if header[:7].lower() == "bearer " else ws.query_params.get("token", "")
    if not given:
        raise ProtocolError(ErrorCode.UNAUTHORIZED,
                            "this server needs a token: send 'Authorization: Bearer TOKEN' or ?token=TOKEN")
    if not hmac.compare_digest(given.encode(), token.encode()):
        raise ProtocolError(ErrorCode.UNAUTHORIZED, "wrong token")


async def _receive(ws: WebSocket, config: ServeConfig, clock: SessionClock) -> tuple[str, Any]:
    """Next frame as ("text", str) or ("bytes", bytes), within the session's deadlines and the
    size limits."""
    left, code = clock.next_deadline()
    try:
        with anyio.fail_after(max(0.0, left)):
            msg = await ws.receive()
    except TimeoutError:
        if code is ErrorCode.SESSION_EXPIRED:
            raise ProtocolError(code, f"session open for {config.max_session_wall_s:g} s, the limit; "
                                      "start a new session") from None
        raise ProtocolError(code, f"no progress for {config.idle_timeout_s:g} s (progress: "
                                  f"{config.idle_progress_s:g} s of new audio, or an utterance); "
                                  "session closed") from None
    if msg["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(msg.get("code", 1000))
    if msg.get("bytes") is not None:
        data = msg["bytes"]
        if len(data) > config.max_message_bytes:
            raise ProtocolError(ErrorCode.MESSAGE_TOO_BIG,
                                f"binary frame of {len(data)} bytes is over the limit of "
                                f"{config.max_message_bytes} bytes; send smaller chunks")
        return "bytes", data
    text = msg.get("text") or ""
    size = len(text.encode("utf-8"))
    if size > min(MAX_TEXT_BYTES, config.max_message_bytes):
        raise ProtocolError(ErrorCode.MESSAGE_TOO_BIG,
                            f"text frame of {size} bytes is over the limit of "
                            f"{min(MAX_TEXT_BYTES, config.max_message_bytes)} bytes")
    return "text", text


async def _receive_start(ws: WebSocket, config: ServeConfig, clock: SessionClock) -> Start:
    kind, payload = await _receive(ws, config, clock)
    if kind == "bytes":
        raise ProtocolError(ErrorCode.PROTOCOL, "audio before 'start': send a start message first")
    msg = parse_client_message(payload)
    if not isinstance(msg, Start):
        raise ProtocolError(ErrorCode.PROTOCOL, f"first message must be 'start', got {msg.type!r}")
    return msg


async def _converse(ws: WebSocket, service: _Service, session: Session, clock: SessionClock) -> None:
    """Handle frames until the client's `end` (answered with the final utterances and `end`)."""
    config = service.config
    stream = session.start.mode == "stream"
    rate = session.start.sample_rate
    while True:
        kind, payload = await _receive(ws, config, clock)
        if kind == "bytes":
            if not stream:
                raise ProtocolError(ErrorCode.PROTOCOL,
                                    "in 'utterances' mode every binary frame must follow an 'utterance' message")
            wave = session.decode(payload)
            clock.audio(wave.size / rate)
            for r in await service.work(session, clock, "push_audio", wave, rate):
                await _send_result(ws, session, clock, r)
            continue
        msg = parse_client_message(payload)
        if isinstance(msg, Start):
            raise ProtocolError(ErrorCode.PROTOCOL, "session already started; open a new connection")
        if isinstance(msg, UtteranceHeader):
            if stream:
                raise ProtocolError(ErrorCode.PROTOCOL, "'utterance' messages need mode 'utterances' (this is 'stream')")
            kind, audio = await _receive(ws, config, clock)
            if kind != "bytes":
                raise ProtocolError(ErrorCode.PROTOCOL, "an 'utterance' message must be followed by a binary frame")
            wave = session.decode(audio)
            result = await service.work(session, clock, "push_utterance", wave, rate,
                                        start=msg.start, end=msg.end, speaker=msg.speaker)
            await _send_result(ws, session, clock, result)
            continue
        for r in await service.work(session, clock, "flush"):
            await _send_result(ws, session, clock, r)
        await _send(ws, Ended(utterances=session.utterances, audio_seconds=round(session.audio_seconds, 3)))
        return


async def _send_result(ws: WebSocket, session: Session, clock: SessionClock, r) -> None:
    msg = UtteranceResult(index=session.utterances, start=round(float(r.start), 3), end=round(float(r.end), 3),
                          speaker=r.speaker,
                          emotion=str(r.emotion), probs={str(k): round(float(v), 5) for k, v in r.probs.items()})
    session.utterances += 1
    clock.progress()
    await _send(ws, msg)


async def _send(ws: WebSocket, msg) -> None:
    # allow_nan=False: Infinity/NaN are not JSON and break a browser's JSON.parse; a non-finite
    # number here is a server bug and ends the session as `internal`
    await ws.send_text(json.dumps(msg.model_dump(), allow_nan=False, ensure_ascii=False, separators=(",", ":")))


async def _send_error(ws: WebSocket, err: ProtocolError) -> None:
    # the client may already be gone: then there is nobody to tell
    with contextlib.suppress(Exception):
        await ws.send_json(err.to_message())
        # a close reason may hold at most 123 bytes
        await ws.close(err.close_code, reason=err.message.encode()[:120].decode(errors="ignore"))


class BackgroundServer:
    """uvicorn serving `app` from a daemon thread on a loopback port it already holds (tests,
    benchmarks). `url` is the http base; `stop()` shuts it down."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0, start_timeout_s: float = 60.0,
                 log_level: str = "warning", **uvicorn_kw):
        import socket
        import threading
        import time

        import uvicorn

        self._sock = socket.socket()
        self._sock.bind((host, port))  # bound before the thread starts: nobody can take the port meanwhile
        self.port = self._sock.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        self._server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, **uvicorn_kw))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + start_timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"uvicorn did not start on {self.url} within {start_timeout_s:g} s")
            time.sleep(0.05)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._sock.close()
