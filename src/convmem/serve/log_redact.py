"""Keep the access token out of the service's logs.

Browsers cannot set headers on a WebSocket, so the page sends its token as `/ws?token=...`;
uvicorn logs every WebSocket's path with its query (`"WebSocket /ws?token=..." [accepted]`),
whatever `access_log` says, and so would an HTTP access log or the websockets library at debug
level. A filter on those loggers rewrites every `token=` value to `token=[redacted]` before any
handler sees the record; the record's arguments are rewritten one by one rather than merged into
the message, because uvicorn's access formatter reads them by position.
"""

from __future__ import annotations

import logging
import re

SECRET = re.compile(r"((?:^|[?&;\s\"'])token=)[^&\s\"';]*", re.IGNORECASE)
REDACTED = r"\1[redacted]"
# every logger that may write a request's URL: uvicorn's own and the websockets library's
LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi", "websockets", "websockets.server",
           "websockets.protocol")


def redact(text: str) -> str:
    return SECRET.sub(REDACTED, text)


class RedactSecrets(logging.Filter):
    """Rewrites `token=...` in a record's message and arguments; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, dict):
            record.args = {k: self._arg(v) for k, v in record.args.items()}
        elif isinstance(record.args, tuple):
            record.args = tuple(self._arg(a) for a in record.args)
        return True

    @staticmethod
    def _arg(value):
        if isinstance(value, (int, float)) or value is None:
            return value
        text = value if isinstance(value, str) else str(value)
        cleaned = redact(text)
        return value if cleaned == text else cleaned


_FILTER = RedactSecrets()


def install() -> None:
    """Put the filter on every logger in LOGGERS (idempotent). Logger filters survive uvicorn's
    own logging set-up, which replaces handlers only, so installing before uvicorn starts works."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
