"""onnxruntime, the one way convmem imports it: with its telemetry off.

Official onnxruntime wheels collect telemetry: on import they create
`~/.cache/Microsoft/DeveloperTools/.onnxruntime/` (a persistent device id and an SQLite event
store with process and OS details) and upload it. convmem promises that serving a conversation
writes nothing to disk, so no onnxruntime session it creates (silero-vad's, the S3 tokenizer's)
may do that. `ORT_DISABLE_TELEMETRY=1` is the only switch that stops the store from being
created, and onnxruntime reads it once, at import; so `convmem/__init__.py` sets it (unless the
user set it) before anything can import onnxruntime, and `onnxruntime()` below also turns off
the non-essential events through the API. A program that imported onnxruntime before convmem has
already made the store; that is logged once.
"""

from __future__ import annotations

import logging
import os
import sys

TELEMETRY_ENV = "ORT_DISABLE_TELEMETRY"
_state = {"too_late": False, "warned": False}


def disable_telemetry_before_import() -> None:
    """Set ORT_DISABLE_TELEMETRY=1 for this process (and the workers it starts), unless set."""
    if "onnxruntime" in sys.modules and TELEMETRY_ENV not in os.environ:
        _state["too_late"] = True
    os.environ.setdefault(TELEMETRY_ENV, "1")


def onnxruntime():
    """The onnxruntime module, telemetry disabled (module doc). Raises ImportError without it."""
    disable_telemetry_before_import()
    import onnxruntime as ort

    ort.disable_telemetry_events()
    if _state["too_late"] and not _state["warned"]:
        _state["warned"] = True
        logging.getLogger("convmem").warning(
            "onnxruntime was imported before convmem, so its telemetry store under ~/.cache/Microsoft "
            "may exist; set %s=1 before starting Python to prevent it", TELEMETRY_ENV)
    return ort
