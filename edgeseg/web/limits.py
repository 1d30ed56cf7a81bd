"""The web sink's limits as nginx sets them, in plain functions and small classes.

nginx bounds what a client costs: ``client_header_timeout`` (a request's headers must arrive in
time), ``keepalive_timeout`` (an idle connection is closed), ``limit_conn`` (connections in
total and per client address), ``large_client_header_buffers`` (line and header sizes), and its
error log never floods or carries credentials. :class:`WebLimits` holds our values;
:class:`ConnLimits` counts connections; :class:`LogGate` lets one line per kind through per
interval; :func:`mask_token` hides ``?token=`` values; :func:`host_allowed` /
:func:`origin_allowed` are the DNS-rebinding and cross-site checks. Nothing here does I/O, so
all of it is tested without a server (``tests/test_web_hardening.py``).
"""

from __future__ import annotations

import ipaddress
import logging
import re
import resource
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from edgeseg.errors import EdgesegError

__all__ = ["ConnLimits", "LogGate", "WebLimits", "host_allowed", "mask_token", "origin_allowed",
           "split_host"]

LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")
_TOKEN_RE = re.compile(r"((?:^|[?&;\s\"'])token=)[^&\s\"'#]*", re.IGNORECASE)
_BEARER_RE = re.compile(r"(Bearer\s+)\S+", re.IGNORECASE)


@dataclass(frozen=True)
class WebLimits:
    """Per-server limits (seconds and counts); tests shorten the timeouts.

    ``header_timeout_s``: a connection's request headers must be complete this long after it
    opened or after its first byte of a new request (nginx ``client_header_timeout``).
    ``idle_timeout_s``: an idle keep-alive connection is closed (``keepalive_timeout``).
    ``max_connections`` / ``max_per_client``: open connections in total / from one address
    (``limit_conn``); the one beyond is answered 503 and closed. ``connect_timeout_s``: a
    WebRTC peer must reach ICE "connected" this long after its offer or its slot is freed.
    """

    header_timeout_s: float = 10.0
    idle_timeout_s: float = 30.0
    max_connections: int = 256
    max_per_client: int = 32
    connect_timeout_s: float = 15.0
    max_line: int = 4096
    max_headers: int = 64

    def checked(self) -> WebLimits:
        """Validated, with ``max_connections`` clamped below the process's file limit (each
        connection is a descriptor; past the limit ``accept()`` fails for everyone)."""
        for name in ("header_timeout_s", "idle_timeout_s", "connect_timeout_s"):
            if not getattr(self, name) > 0:
                raise EdgesegError(f"web limits: {name} must be > 0, got {getattr(self, name)}")
        if self.max_connections < 1 or self.max_per_client < 1:
            raise EdgesegError("web limits: connection caps must be >= 1")
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        cap = fd_budget(soft, self.max_connections)
        if cap == self.max_connections:
            return self
        return WebLimits(self.header_timeout_s, self.idle_timeout_s, cap,
                         min(self.max_per_client, cap), self.connect_timeout_s, self.max_line,
                         self.max_headers)


def fd_budget(soft_limit: int, wanted: int, reserve: int = 64) -> int:
    """Connections that fit under a file limit, keeping ``reserve`` descriptors for the rest of
    the process (model files, cameras, sinks); ``RLIM_INFINITY`` (-1) does not bound."""
    if soft_limit < 0:
        return wanted
    return max(1, min(wanted, soft_limit - reserve))


class ConnLimits:
    """Open connections in total and per client address (nginx ``limit_conn``)."""

    def __init__(self, max_total: int, max_per_client: int) -> None:
        self.max_total, self.max_per_client = max_total, max_per_client
        self.total = 0
        self.per_client: dict[str, int] = {}

    def admit(self, addr: str) -> str | None:
        """Count a new connection from ``addr``; or the reason it is refused (not counted)."""
        if self.total >= self.max_total:
            return "connection limit"
        if self.per_client.get(addr, 0) >= self.max_per_client:
            return "per-client connection limit"
        self.total += 1
        self.per_client[addr] = self.per_client.get(addr, 0) + 1
        return None

    def release(self, addr: str) -> None:
        n = self.per_client.get(addr, 0)
        if n <= 0:
            return
        self.total -= 1
        if n == 1:
            del self.per_client[addr]  # the table never grows with addresses that left
        else:
            self.per_client[addr] = n - 1


def mask_token(text: str) -> str:
    """``?token=abc`` -> ``?token=<token>``, ``Bearer abc`` -> ``Bearer <token>``."""
    return _BEARER_RE.sub(r"\1<token>", _TOKEN_RE.sub(r"\1<token>", text))


class LogGate:
    """At most one line per kind per ``interval_s`` (the rest counted and reported with the
    next line of that kind), each masked and on one line: a flood of bad requests or accept
    errors costs a line a minute, not megabytes of tracebacks."""

    def __init__(self, logger: logging.Logger, interval_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger, self.interval_s, self._clock = logger, interval_s, clock
        self._last: dict[str, float] = {}
        self._skipped: dict[str, int] = {}

    def __call__(self, kind: str, message: str, level: int = logging.WARNING) -> bool:
        """Log ``message`` under ``kind`` unless one went out within the interval."""
        now = self._clock()
        last = self._last.get(kind)
        if last is not None and now - last < self.interval_s:
            self._skipped[kind] = self._skipped.get(kind, 0) + 1
            return False
        self._last[kind] = now
        skipped = self._skipped.pop(kind, 0)
        line = " ".join(mask_token(message).split())  # one line whatever the message holds
        if skipped:
            line += f" (+{skipped} more like it in the last {self.interval_s:g} s)"
        self.logger.log(level, "web: %s", line)
        return True


def split_host(value: str) -> str | None:
    """The host name of a ``Host`` header (``name``, ``name:port``, ``[v6]:port``), lowercased
    without a trailing dot; None when it is not a valid host."""
    v = value.strip().lower()
    if not v or any(c.isspace() or c in "/\\@?#" for c in v):
        return None
    try:
        parts = urlsplit(f"//{v}")
        _ = parts.port  # raises on a bad port
    except ValueError:
        return None
    host = parts.hostname
    return host.rstrip(".") if host else None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def host_allowed(host: str | None, bound: str, names: Iterable[str] = ()) -> bool:
    """Whether a request's ``Host`` names this server: the bound address, loopback and
    localhost names, ``names`` (``web_host``), or, when bound to every interface, any IP
    address. A DNS-rebinding page reaches us under its own domain name, never an IP literal,
    so a name not on the list is refused (421)."""
    if host is None:
        return False
    name = split_host(host)
    if name is None:
        return False
    if name in LOCAL_NAMES or name.endswith(".localhost") or name in {n.lower() for n in names}:
        return True
    if not _is_ip(name):
        return False
    ip = ipaddress.ip_address(name)
    if ip.is_loopback or bound in ("0.0.0.0", "::"):
        return True
    return _is_ip(bound) and ip == ipaddress.ip_address(bound)


def origin_allowed(origin: str | None, host: str | None) -> bool:
    """A state-changing request (POST ``/offer``) from a browser must come from this page:
    its ``Origin`` names the same host and port as its ``Host``. No ``Origin`` (curl, a
    script) is allowed; ``null`` (sandboxed or file pages) is not."""
    if origin is None:
        return True
    if host is None or origin.strip().lower() == "null":
        return False
    try:
        o = urlsplit(origin.strip())
        onetloc = o.netloc.lower()
    except ValueError:
        return False
    if o.scheme not in ("http", "https") or not onetloc:
        return False
    default = ":443" if o.scheme == "https" else ":80"  # an explicit default port is the same

    def bare(netloc: str) -> str:
        return netloc[: -len(default)] if netloc.endswith(default) else netloc

    return bare(onetloc) == bare(host.strip().lower())
