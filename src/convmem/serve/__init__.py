"""Live service (`convmem serve`): a WebSocket API with one temporary memory per session.

`ServeConfig` is cheap to import; `create_app` (FastAPI) is imported on first use.
"""

from convmem.serve.sessions import ServeConfig

__all__ = ["ServeConfig", "create_app"]


def __getattr__(name: str):
    if name == "create_app":
        from convmem.serve.app import create_app

        return create_app
    raise AttributeError(name)
