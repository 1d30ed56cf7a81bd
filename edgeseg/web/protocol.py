"""Connection-level guards on aiohttp's own request handler (the limits of :mod:`.limits`).

aiohttp bounds the request line, header sizes and count (``max_line_size`` /
``max_field_size`` / ``max_headers``), idle keep-alive (``keepalive_timeout``) and cancels a
handler whose client left (``handler_cancellation``); we use those. What it lacks sits here, on
a :class:`aiohttp.web.RequestHandler` subclass built per connection:

- a connection cap in total and per client address, checked before any byte is parsed
  (refused with a fixed 503 and closed);
- a header-read deadline from the connection's open (or from the first byte of its next
  request), so half-open clients cost one descriptor for ``header_timeout_s`` at most;
- error responses with a fixed one-line body (never the request line, which may hold the
  token) and rate-limited, masked, one-line logs instead of a traceback per bad request.

The route middleware calls :meth:`GuardedHandler.begin` / :meth:`GuardedHandler.end` around
each request, so a connection inside a handler (an MJPEG stream) is never timed out here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from aiohttp import web

from edgeseg.web.limits import ConnLimits, LogGate, WebLimits

__all__ = ["ConnGuard", "GuardedHandler", "SECURITY_HEADERS", "loop_exception_handler"]

log = logging.getLogger("edgeseg.web")

# on every response, errors included: no MIME sniffing, no caching (frames and stats are live,
# the page carries the token), no referrer (the token may be in the URL), no framing
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store",
                    "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
                    "Server": "edgeseg"}
_REFUSED = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
            b"Content-Length: 36\r\nConnection: close\r\nRetry-After: 10\r\n"
            b"X-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\nServer: edgeseg\r\n"
            b"\r\n503: too many connections, try later\n")


class ConnGuard:
    """What all connections of one server share: the limits, the counts, the log gate, and
    how many connections each timeout closed (the tests read ``closed``)."""

    def __init__(self, limits: WebLimits, gate: LogGate | None = None) -> None:
        self.limits = limits
        self.conns = ConnLimits(limits.max_connections, limits.max_per_client)
        self.gate = gate or LogGate(log)
        self.closed: dict[str, int] = {}
        self.refused = 0

    def factory(self, server: web.Server, loop: asyncio.AbstractEventLoop,
                **handler_args: Any) -> Callable[[], GuardedHandler]:
        """The protocol factory for ``loop.create_server``."""
        return lambda: GuardedHandler(server, guard=self, loop=loop, **handler_args)


class GuardedHandler(web.RequestHandler):
    """aiohttp's request handler with the connection caps, header deadline and quiet errors."""

    def __init__(self, manager: web.Server, *, guard: ConnGuard, **kw: Any) -> None:
        limits = guard.limits
        kw.setdefault("access_log", None)  # request lines may hold the token
        kw.setdefault("keepalive_timeout", limits.idle_timeout_s)
        kw.setdefault("max_line_size", limits.max_line)
        kw.setdefault("max_field_size", limits.max_line)
        kw.setdefault("max_headers", limits.max_headers)
        super().__init__(manager, **kw)
        self._evloop: asyncio.AbstractEventLoop = kw["loop"]
        self._guard = guard
        self._addr: str | None = None  # set once admitted
        self._timer: asyncio.TimerHandle | None = None
        self._busy = 0  # requests inside a handler on this connection
        self._waiting_first_byte = False

    # -- transport events ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        addr = str(peer[0]) if isinstance(peer, (tuple, list)) and peer else "unix"
        reason = self._guard.conns.admit(addr)
        if reason is not None:
            self._guard.refused += 1
            self._guard.gate("refused", f"refused connections: {reason} "
                             f"({self._guard.limits.max_connections} total, "
                             f"{self._guard.limits.max_per_client} per client)")
            assert isinstance(transport, asyncio.WriteTransport)
            transport.write(_REFUSED)
            transport.close()
            return
        self._addr = addr
        super().connection_made(transport)
        self._arm(self._guard.limits.header_timeout_s, "header timeout")

    def data_received(self, data: bytes) -> None:
        if self._addr is None:
            return
        if self._waiting_first_byte and data:  # idle keep-alive -> a new request's headers
            self._waiting_first_byte = False
            self._arm(self._guard.limits.header_timeout_s, "header timeout")
        super().data_received(data)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._addr is None:
            return
        self._cancel_timer()
        self._guard.conns.release(self._addr)
        self._addr = None
        super().connection_lost(exc)

    # -- request bracket (called by the route middleware) ----------------------------------
    def begin(self) -> None:
        self._busy += 1
        self._waiting_first_byte = False
        self._cancel_timer()

    def end(self) -> None:
        self._busy -= 1
        if self._busy == 0 and self._addr is not None:
            self._waiting_first_byte = True
            self._arm(self._guard.limits.idle_timeout_s, "idle timeout")

    # -- timers ----------------------------------------------------------------------------
    def _arm(self, delay: float, why: str) -> None:
        self._cancel_timer()
        self._timer = self._evloop.call_later(delay, self._expire, why)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self, why: str) -> None:
        self._timer = None
        if self._busy or self._addr is None:
            return
        g = self._guard
        g.closed[why] = g.closed.get(why, 0) + 1
        g.gate(why, f"closed connections: {why} ({g.closed[why]} so far)", logging.INFO)
        self.force_close()

    # -- errors: one masked line, a fixed body ---------------------------------------------
    def log_exception(self, *args: Any, **kw: Any) -> None:
        exc = kw.get("exc_info")
        msg = str(args[0]) % args[1:] if len(args) > 1 else str(args[0]) if args else "error"
        kind = type(exc).__name__ if isinstance(exc, BaseException) else "error"
        detail = f": {kind}: {exc}" if isinstance(exc, BaseException) else ""
        self._guard.gate(f"exception {kind}", msg + detail, logging.ERROR)

    def handle_error(self, request: web.BaseRequest, status: int = 500,
                     exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        kind = type(exc).__name__ if exc is not None else "error"
        self._guard.gate(f"{status} {kind}", f"{status} for a request from {request.remote}: "
                         f"{kind}: {exc if exc is not None else message or ''}",
                         logging.ERROR if status >= 500 else logging.INFO)
        if request.writer.output_size > 0:  # as aiohttp: the response already started
            raise ConnectionError("response already started, cannot send an error")
        phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else ""
        resp = web.Response(status=status, text=f"{status} {phrase}\n",
                            headers=SECURITY_HEADERS)
        resp.force_close()
        return resp


def loop_exception_handler(gate: LogGate) -> Callable[[asyncio.AbstractEventLoop,
                                                       dict[str, Any]], None]:
    """The server loop's handler: asyncio's own errors (``socket.accept() out of system
    resource`` under a descriptor flood) as one rate-limited line per kind."""

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        msg = str(context.get("message", "event loop error"))
        kind = f"loop {msg[:40]} {type(exc).__name__ if exc is not None else ''}"
        gate(kind, f"{msg}{f': {type(exc).__name__}: {exc}' if exc is not None else ''}",
             logging.ERROR)

    return handle
