"""Which web pages and host names may use `convmem serve`: Origin and Host checks.

A service on the user's own machine is reachable from every web page the user visits: browsers
let any page open a WebSocket to 127.0.0.1 (cross-site WebSocket hijacking), and a page whose
domain its owner re-points at 127.0.0.1 (DNS rebinding) even reads its HTTP answers as its own.
Two checks close both:

- Host: every request's Host header must name this server as the user reaches it: a loopback
  name (localhost, *.localhost) or address, the address or name it was bound to (`--host`), any IP
  address when bound to all interfaces (a rebinding page always comes with its own domain name),
  or the host of an `--allow-origin`. Anything else gets 403.
- Origin: a browser names the page behind every WebSocket. Allowed: the same origin as the
  service (its own page), a page served from a loopback host (a local development server), and
  each `--allow-origin`; `Origin: null` (sandboxed frames, files) only when allowed explicitly.
  A client that sends no Origin is not a browser, and is governed by the token alone.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from convmem.errors import ConfigError

WILDCARD_HOSTS = ("0.0.0.0", "::", "")
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def normalize_origin(origin: str) -> str:
    """`scheme://host[:port]` in lower case, as browsers send it; "null" and "*" as they are.
    Raises ConfigError for anything else (a path, a missing scheme)."""
    origin = origin.strip().rstrip("/").lower()
    if origin in ("null", "*"):
        return origin
    parts = urlsplit(origin)
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ConfigError(f"--allow-origin {origin!r}: bad port") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path or parts.query:
        raise ConfigError(f"--allow-origin {origin!r}: expected scheme://host[:port] (e.g. "
                          "https://app.example.org), 'null' or '*'")
    return origin


def _is_loopback(name: str) -> bool:
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _split_host(host: str) -> tuple[str, int | None]:
    """Host header -> (lower-case name without brackets, port or None); ("", None) if unparsable."""
    try:
        parts = urlsplit(f"//{host.strip()}")
        return (parts.hostname or "", parts.port)
    except ValueError:
        return "", None


@dataclass(frozen=True)
class AccessPolicy:
    """The Host and Origin rules of one server (module doc)."""

    bound_host: str = "127.0.0.1"
    allowed_origins: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "allowed_origins", tuple(normalize_origin(o) for o in self.allowed_origins))

    def host_problem(self, host: str | None) -> str | None:
        """Why a request with this Host header is refused, or None when it is fine."""
        name, _ = _split_host(host or "")
        if not name:
            return "missing or malformed Host header"
        bound = self.bound_host.strip("[]").lower()
        if (_is_loopback(name) or name == bound or (bound in WILDCARD_HOSTS and _is_ip(name))
                or "*" in self.allowed_origins
                or any(_split_host(urlsplit(o).netloc)[0] == name for o in self.allowed_origins)):
            return None
        return (f"Host {host!r} is not this server's name (DNS rebinding?); reach it as localhost or "
                f"its address, or start it with --allow-origin for that site")

    def origin_problem(self, origin: str | None, host: str | None) -> str | None:
        """Why a WebSocket from the page at `origin` (to a server reached as `host`) is refused."""
        if origin is None:
            return None  # not a browser (see the module doc)
        origin = origin.strip().lower()
        if origin in self.allowed_origins or "*" in self.allowed_origins:
            return None
        if origin != "null":
            parts = urlsplit(origin)
            try:
                page = (parts.hostname or "", parts.port or _DEFAULT_PORTS.get(parts.scheme))
            except ValueError:
                page = ("", None)
            name, port = _split_host(host or "")
            if page[0] and (_is_loopback(page[0]) or page == (name, port or _DEFAULT_PORTS["http"])
                            or (page[0] == name and port is None)):
                return None
        return (f"pages from {origin} may not use this service; start it with --allow-origin {origin} "
                "to allow them")
