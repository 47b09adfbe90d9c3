"""`convmem serve MODEL`: the live service (WebSocket API + web page), one memory per session."""

from __future__ import annotations

import argparse

TOKEN_ENV = "CONVMEM_TOKEN"


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "serve", help="serve a model live: WebSocket API and a web page, one temporary memory per session",
        description="Serve a trained model directory. Clients stream audio over a WebSocket (/ws; protocol at "
                    "/api/protocol) and get each utterance's emotion as soon as it ends; the page at / shows a "
                    "live timeline from a file or the microphone. Each session's memory lives only as long as "
                    "its connection; no audio and no memory is written anywhere.")
    p.add_argument("model", help="model directory (from `convmem run` / train)")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--memory", default="dpm", help="test-time memory per session: dpm, mal, window, none, ... "
                                                   "(default dpm)")
    p.add_argument("--speakers", default="auto", metavar="auto|N|none",
                   help="stream mode: label each VAD utterance with a speaker, assigned online to a known or new "
                        "voice (auto; the default), to at most N voices, or none")
    p.add_argument("--max-sessions", type=int, default=8, help="concurrent sessions (default 8)")
    p.add_argument("--max-message-mb", type=float, default=4.0, help="largest WebSocket frame in MiB (default 4)")
    p.add_argument("--max-session-minutes", type=float, default=60.0,
                   help="audio one session may send, in minutes (default 60)")
    p.add_argument("--max-session-s", type=float, default=7200.0, metavar="S",
                   help="seconds a session may stay open, whatever it sends (default 7200)")
    p.add_argument("--idle-timeout", type=float, default=60.0,
                   help="seconds without progress (new audio of 1 s or more, or an utterance) before a "
                        "session is closed (default 60)")
    p.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                   help="also accept browser sessions from pages at ORIGIN (scheme://host[:port]; repeatable). "
                        "By default only the service's own page and pages on localhost may connect")
    p.add_argument("--token-file", help=f"file holding the bearer token clients must send (or set ${TOKEN_ENV}); "
                                        "without either the service is open")
    return p


def run(args) -> int:
    import logging
    import os
    import socket
    from pathlib import Path

    import uvicorn

    from convmem.errors import ConfigError
    from convmem.serve.app import create_app
    from convmem.serve.sessions import ServeConfig

    from convmem.speakers.options import parse_speakers

    parse_speakers(args.speakers)  # a bad value fails before the model loads
    token = os.environ.get(TOKEN_ENV) or None
    if args.token_file:
        try:
            token = Path(args.token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"--token-file {args.token_file}: {exc.strerror}") from None
    config = ServeConfig(max_sessions=args.max_sessions, max_message_bytes=int(args.max_message_mb * 1024 * 1024),
                         max_session_seconds=args.max_session_minutes * 60, max_session_wall_s=args.max_session_s,
                         idle_timeout_s=args.idle_timeout, token=token, memory=args.memory, host=args.host,
                         allowed_origins=tuple(args.allow_origin))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if token is None and args.host not in ("127.0.0.1", "localhost", "::1"):
        logging.getLogger("convmem.serve").warning(
            "listening on %s without a token: anyone who can reach it can use it (set $%s)", args.host, TOKEN_ENV)
    with socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET) as probe:
        try:
            probe.bind((args.host, args.port))
        except OSError as exc:
            raise ConfigError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
    from convmem.predict import Predictor

    # loaded here, not at app startup, so a bad model directory is a clean CLI error
    predictor = Predictor.load(Path(args.model), memory=config.memory, speakers=args.speakers)
    app = create_app(lambda: predictor, config)
    print(f"convmem serve: http://{args.host}:{args.port}/  (WebSocket /ws, memory {args.memory}, "
          f"{'token required' if token else 'no token'})", flush=True)
    # frames a little over our limit still reach the app, which answers with a named error;
    # far bigger ones are cut by the server itself (close 1009) before they are buffered
    uvicorn.run(app, host=args.host, port=args.port, ws_max_size=2 * config.max_message_bytes,
                log_level="info", access_log=False)
    return 0
