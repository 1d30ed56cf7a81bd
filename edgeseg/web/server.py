"""The aiohttp app on its own thread and event loop: page, MJPEG, stats, SSE, snapshot, health.

Every request must name this server in ``Host`` (421 otherwise: DNS rebinding) and, when it
changes state (POST), come from this page's origin (403); every route needs the token when one
is set (``?token=``, ``Authorization: Bearer`` or ``X-Edgeseg-Token``); viewers (MJPEG
streams, WebRTC peers) are capped at ``max_clients`` and the one beyond is answered 503 with a
message; connections, header time, request lines, headers and bodies are bounded
(:mod:`.limits`, :mod:`.protocol`); no route reads a file. :meth:`WebServer.stop` publishes
the final numbers and keeps serving the last frame and summary for ``linger_s``, then closes
every stream and the loop.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import socket
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeseg.errors import EdgesegError
from edgeseg.web.hub import FrameHub
from edgeseg.web.limits import WebLimits, host_allowed, origin_allowed
from edgeseg.web.page import render_page
from edgeseg.web.stats import LiveStats, class_shares
from edgeseg.web.streams import StreamRoutes, dumps
from edgeseg.web.uri import WebSpec

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["MAX_BODY", "WebServer", "ssl_context"]

MAX_BODY = 64 * 1024  # a WebRTC offer is a few KiB; nothing else takes a body
STATS_PERIOD_S = 0.5
START_TIMEOUT_S = 15.0
_ROUTES = ("/stats", "/events", "/stream.mjpg", "/snapshot.jpg", "/healthz", "/offer")


def ssl_context(cert: Path | str | None, key: Path | str | None) -> ssl.SSLContext | None:
    """TLS for HTTPS (browsers need it for WebRTC off localhost); both files or neither."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise EdgesegError("--ssl-cert and --ssl-key go together: give both or neither")
    for p in (cert, key):
        if not Path(p).is_file():
            raise EdgesegError(f"TLS file {p} does not exist")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_cert_chain(str(cert), str(key))
    except (ssl.SSLError, OSError) as e:
        raise EdgesegError(f"cannot load TLS certificate {cert} / key {key}: {e}") from None
    return ctx


class WebServer(StreamRoutes):
    """Serves one sink's page. ``start()`` returns once the socket listens (``url`` then
    holds the real port when 0 was asked); ``stop()`` is idempotent and thread-safe."""

    def __init__(
        self, spec: WebSpec, hub: FrameHub, stats: LiveStats, *, token: str | None = None,
        ssl_ctx: ssl.SSLContext | None = None, max_clients: int = 4, title: str = "edgeseg",
        linger_s: float = 1.5, web_host: Sequence[str] = (), limits: WebLimits | None = None,
        announce: Callable[[str], Any] | None = None,
    ) -> None:
        if max_clients < 1:
            raise EdgesegError(f"--max-clients must be >= 1, got {max_clients}")
        if token is not None and (not token or any(c.isspace() for c in token)):
            raise EdgesegError("--web-token must be a non-empty string without spaces")
        if spec.tls_requested and ssl_ctx is None:
            raise EdgesegError(f"--sink {spec.scheme}://...: HTTPS needs --ssl-cert and --ssl-key")
        self.spec, self.hub, self.stats = spec, hub, stats
        self.token, self.ssl_ctx, self.max_clients = token, ssl_ctx, max_clients
        self.title, self.linger_s = title, linger_s
        self.limits = (limits or WebLimits()).checked()
        # names a browser may use for us beyond IP literals and localhost (421 otherwise)
        self.host_names = {h.strip().lower().rstrip(".") for h in web_host if h.strip()}
        self.host_names |= {socket.gethostname().lower(), f"{socket.gethostname().lower()}.local"}
        self.announce = announce
        self.guard: Any = None  # the ConnGuard, once serving
        self._streams: dict[str, asyncio.Task[Any]] = {}  # viewer id -> its MJPEG handler
        self.port = spec.port
        self.bound: list[tuple[Any, ...]] = []  # the listening sockets' addresses
        self.viewers = 0
        self.encode_error: str | None = None
        self.events_clients = 0
        self.peers: set[Any] = set()  # WebRTC RTCPeerConnections
        self.peer_tasks: set[asyncio.Task[None]] = set()  # their ICE connect deadlines
        self.snap: dict[str, Any] = {}
        self._snap_event: asyncio.Event | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._stopping: asyncio.Event | None = None
        self._linger: asyncio.Event | None = None
        self._stopped = threading.Event()
        self._closed = False

    # -- lifecycle (caller's thread) -------------------------------------------------------
    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_ctx is not None else "http"
        host = "127.0.0.1" if self.spec.host in ("0.0.0.0", "::") else self.spec.host
        if ":" in host:
            host = f"[{host}]"
        path = "" if self.spec.path == "/" else self.spec.path
        return f"{scheme}://{host}:{self.port}{path}/"

    @property
    def shown_url(self) -> str:
        """:attr:`url` as printed and logged: with ``?token=<token>`` when a token is set."""
        return self.url + ("?token=<token>" if self.token is not None else "")

    def start(self) -> WebServer:
        self._thread = threading.Thread(target=self._main, name="edgeseg-web", daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S):
            raise EdgesegError(f"web server on {self.spec.host}:{self.spec.port} did not start "
                               f"within {START_TIMEOUT_S:.0f} s")
        if self._start_error is not None:
            raise self._start_error
        if self.announce is not None:
            self.announce(f"web: {self.spec.video} view at {self.shown_url}")
        return self

    def stop(self) -> None:
        if self._closed:
            return
        self._closed = True
        loop = self.loop
        if loop is not None and self._stopping is not None and not self._stopped.is_set():
            loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join(timeout=self.linger_s + 10.0)

    # -- the server thread -----------------------------------------------------------------
    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        self.loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as e:  # noqa: BLE001 - reported to start() or dropped at exit
            if not self._ready.is_set():
                self._start_error = e
        finally:
            self._ready.set()
            self._stopped.set()
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    async def _serve(self) -> None:
        from aiohttp import web

        from edgeseg.web.protocol import ConnGuard, loop_exception_handler

        loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._snap_event = asyncio.Event()
        self.guard = guard = ConnGuard(self.limits)
        loop.set_exception_handler(loop_exception_handler(guard.gate))
        app = self.build_app()
        # handler_cancellation: a stream's handler ends (and frees its slot) when its socket closes
        runner = web.AppRunner(app, access_log=None, handle_signals=False,
                               shutdown_timeout=2.0, handler_cancellation=True)
        await runner.setup()
        assert runner.server is not None
        try:  # our own listener: each connection gets the guarded handler (caps, header timeout)
            listener = await loop.create_server(
                guard.factory(runner.server, loop), self.spec.host, self.spec.port,
                ssl=self.ssl_ctx, backlog=128)
        except OSError as e:
            await runner.cleanup()
            raise EdgesegError(f"web sink: cannot listen on {self.spec.host}:{self.spec.port} "
                               f"({e.strerror or e})") from None
        self.bound = [tuple(s.getsockname()) for s in listener.sockets]
        if self.bound:
            self.port = int(self.bound[0][1])
        self._publish()
        self._ready.set()
        ticker = asyncio.ensure_future(self._tick())
        try:
            await self._stopping.wait()
            await self._finish()
        finally:
            ticker.cancel()
            self.hub.close()
            self._wake_snap()
            for t in list(self.peer_tasks):
                t.cancel()
            for pc in list(self.peers):
                await pc.close()
            listener.close()
            await runner.cleanup()

    async def _finish(self) -> None:
        """Publish the last numbers, then keep serving them and the last frame for ``linger_s``
        (a viewer who opens the page late still sees how the run ended)."""
        self._publish()
        self._linger = asyncio.Event()
        try:
            await asyncio.wait_for(self._linger.wait(), self.linger_s)
        except asyncio.TimeoutError:
            pass

    def end_linger(self) -> None:
        """Stop serving the final frame now (thread-safe; e.g. a second Ctrl-C, or a test)."""
        loop, ev = self.loop, self._linger
        if loop is not None and ev is not None and not loop.is_closed():
            loop.call_soon_threadsafe(ev.set)

    async def _tick(self) -> None:
        assert self.loop is not None
        period = 1.0 / self.hub.stream_fps
        next_stats = 0.0
        while True:
            t = time.monotonic()
            if self.viewers > 0:
                try:
                    await self.hub.encode_latest(self.loop)
                except Exception as e:  # noqa: BLE001 - a bad frame must not stop the stream
                    self.encode_error = f"{type(e).__name__}: {e}"
            if t >= next_stats:
                next_stats = t + STATS_PERIOD_S
                self._publish()
            await asyncio.sleep(max(0.0, period - (time.monotonic() - t)))

    def _publish(self) -> None:
        """A new stats snapshot (with the classes of the latest labels) for /stats and SSE."""
        _, labels, _, _ = self.hub.latest()
        model = self.stats.model
        if labels is not None and model.get("classes"):
            self.stats.classes = class_shares(labels, model["classes"], model.get("palette", []))
        self.snap = self.stats.snapshot(viewers=self.viewers, extra={"video": self.spec.video})
        self._wake_snap()

    def _wake_snap(self) -> None:
        if self._snap_event is not None:
            self._snap_event.set()
        self._snap_event = asyncio.Event()

    # -- the app -----------------------------------------------------------------------------
    def build_app(self) -> web.Application:
        from aiohttp import web

        # line / header limits and keep-alive are set per connection (protocol.GuardedHandler)
        app = web.Application(client_max_size=MAX_BODY, middlewares=[self._guard])
        app.on_response_prepare.append(self._secure_headers)
        pages = {"/"} | {self.spec.path}
        for p in sorted(pages):
            app.router.add_get(p, self._page)
        app.router.add_get("/stats", self._stats)
        app.router.add_get("/events", self._events)
        app.router.add_get("/stream.mjpg", self._mjpeg)
        app.router.add_get("/snapshot.jpg", self._snapshot)
        app.router.add_get("/healthz", self._healthz)
        if self.spec.video == "webrtc":
            app.router.add_post("/offer", self._offer)
        return app

    def _authorised(self, request: web.Request) -> bool:
        if self.token is None:
            return True
        given = request.query.get("token") or request.headers.get("X-Edgeseg-Token") or ""
        auth = request.headers.get("Authorization", "")
        if not given and auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        return hmac.compare_digest(given.encode(), self.token.encode())

    def _refusal(self, request: web.Request) -> web.Response | None:
        """421 / 400 for a Host that is not ours, 403 for a cross-origin POST, 401 without the
        token; None when the request may go on."""
        from aiohttp import web

        host = request.headers.get("Host")
        if not host:
            return web.Response(status=400, text="400: a Host header is required\n")
        if not host_allowed(host, self.spec.host, self.host_names):
            return web.Response(status=421, text="421: this server does not answer for that "
                                "Host (add the name with --web-host)\n")
        if request.method not in ("GET", "HEAD", "OPTIONS") and not origin_allowed(
                request.headers.get("Origin"), host):
            return web.Response(status=403, text="403: cross-origin request refused\n")
        if not self._authorised(request):
            return web.Response(status=401, text="401: this stream needs its token "
                                "(?token=... or 'Authorization: Bearer ...')\n",
                                headers={"WWW-Authenticate": "Bearer"})
        return None

    async def _guard_impl(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        from aiohttp import web

        from edgeseg.web.protocol import GuardedHandler

        refused = self._refusal(request)
        if refused is not None:
            return refused
        proto = request.protocol if isinstance(request.protocol, GuardedHandler) else None
        if proto is not None:
            proto.begin()  # inside a handler: no header / idle deadline
        try:
            return await handler(request)
        except web.HTTPException as e:  # 404 / 405: a plain response, the same headers
            return web.Response(status=e.status, text=f"{e.status}: {e.reason}\n",
                                headers={k: v for k, v in e.headers.items()
                                         if k in ("Allow", "Retry-After")})
        finally:
            if proto is not None:
                proto.end()

    async def _secure_headers(self, request: web.Request, resp: web.StreamResponse) -> None:
        """Every response (streams and errors too): see ``protocol.SECURITY_HEADERS``."""
        from edgeseg.web.protocol import SECURITY_HEADERS

        for k, v in SECURITY_HEADERS.items():
            if k == "Cache-Control":
                resp.headers.setdefault(k, v)
            else:
                resp.headers[k] = v

    @property
    def _guard(self) -> Any:
        from aiohttp import web

        @web.middleware
        async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
            return await self._guard_impl(request, handler)

        return guard

    async def _page(self, request: web.Request) -> web.Response:
        from aiohttp import web

        # never refused when full: a reload must not lock its viewer out (the old page's
        # stream is still closing); the page's stream is refused and retries instead
        html = render_page(title=self.title, token=self.token, video=self.spec.video,
                           ice_timeout_s=self.limits.connect_timeout_s,
                           stream_fps=self.hub.stream_fps)
        return web.Response(text=html, content_type="text/html", headers={
            "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; "
            "script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; "
            "media-src 'self' blob:"})

    async def _stats(self, request: web.Request) -> web.Response:
        from aiohttp import web

        return web.Response(text=dumps(self.snap), content_type="application/json")

    async def _healthz(self, request: web.Request) -> web.Response:
        from aiohttp import web

        body = {"ok": True, "ended": self.stats.ended, "frames": self.stats.frames,
                "viewers": self.viewers}
        return web.Response(text=json.dumps(body), content_type="application/json")
