"""The aiohttp app on its own thread and event loop: page, MJPEG, stats, SSE, snapshot, health.

Every route needs the token when one is set (``?token=``, ``Authorization: Bearer`` or
``X-Edgeseg-Token``); viewers (MJPEG streams, WebRTC peers) are capped at ``max_clients`` and
the one beyond is answered 503 with a message; request lines, headers and bodies are bounded;
no route reads a file. :meth:`WebServer.stop` publishes the final numbers, gives open pages
``linger_s`` to receive them, then closes every stream and the loop.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import math
import ssl
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeseg.errors import EdgesegError
from edgeseg.web.hub import FrameHub, encode_jpeg
from edgeseg.web.page import busy_page, render_page
from edgeseg.web.stats import LiveStats, class_shares
from edgeseg.web.uri import WebSpec

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["MAX_BODY", "WebServer", "ssl_context"]

MAX_BODY = 64 * 1024  # a WebRTC offer is a few KiB; nothing else takes a body
MAX_LINE = 4096
MAX_HEADERS = 64
WRITE_TIMEOUT_S = 10.0  # a viewer that accepts nothing for this long is dropped
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


def _json_default(o: Any) -> Any:
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return str(o)


def dumps(d: Any) -> str:
    """JSON for browsers: NaN / inf (never valid JSON) become null."""
    return json.dumps(_clean(d), default=_json_default)


def _clean(d: Any) -> Any:
    if isinstance(d, float):
        return d if math.isfinite(d) else None
    if isinstance(d, dict):
        return {k: _clean(v) for k, v in d.items()}
    if isinstance(d, (list, tuple)):
        return [_clean(v) for v in d]
    return d


class WebServer:
    """Serves one sink's page. ``start()`` returns once the socket listens (``url`` then
    holds the real port when 0 was asked); ``stop()`` is idempotent and thread-safe."""

    def __init__(
        self, spec: WebSpec, hub: FrameHub, stats: LiveStats, *, token: str | None = None,
        ssl_ctx: ssl.SSLContext | None = None, max_clients: int = 4, title: str = "edgeseg",
        linger_s: float = 1.5,
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
        self.port = spec.port
        self.bound: list[tuple[Any, ...]] = []  # the listening sockets' addresses
        self.viewers = 0
        self.encode_error: str | None = None
        self.events_clients = 0
        self.peers: set[Any] = set()  # WebRTC RTCPeerConnections
        self.snap: dict[str, Any] = {}
        self._snap_event: asyncio.Event | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._stopping: asyncio.Event | None = None
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

    def start(self) -> WebServer:
        self._thread = threading.Thread(target=self._main, name="edgeseg-web", daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S):
            raise EdgesegError(f"web server on {self.spec.host}:{self.spec.port} did not start "
                               f"within {START_TIMEOUT_S:.0f} s")
        if self._start_error is not None:
            raise self._start_error
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

        self._stopping = asyncio.Event()
        self._snap_event = asyncio.Event()
        app = self.build_app()
        runner = web.AppRunner(app, access_log=None, handle_signals=False,
                               shutdown_timeout=2.0)
        await runner.setup()
        site = web.TCPSite(runner, self.spec.host, self.spec.port, ssl_context=self.ssl_ctx)
        try:
            await site.start()
        except OSError as e:
            await runner.cleanup()
            raise EdgesegError(f"web sink: cannot listen on {self.spec.host}:{self.spec.port} "
                               f"({e.strerror or e})") from None
        addrs = runner.addresses
        self.bound = [tuple(a) for a in addrs]
        if addrs:
            self.port = int(addrs[0][1])
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
            for pc in list(self.peers):
                await pc.close()
            await runner.cleanup()

    async def _finish(self) -> None:
        """Publish the last numbers and wait (up to ``linger_s``) until every open page got them."""
        self._publish()
        deadline = time.monotonic() + self.linger_s
        while time.monotonic() < deadline and self.events_clients > 0:  # each leaves after "end"
            await asyncio.sleep(0.05)

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

        app = web.Application(
            client_max_size=MAX_BODY, middlewares=[self._guard],
            handler_args={"max_line_size": MAX_LINE, "max_field_size": MAX_LINE,
                          "max_headers": MAX_HEADERS})
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

    async def _guard_impl(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        from aiohttp import web

        if not self._authorised(request):
            resp: web.StreamResponse = web.Response(
                status=401, text="401: this stream needs its token (?token=... or "
                "'Authorization: Bearer ...')\n", headers={"WWW-Authenticate": "Bearer"})
        else:
            resp = await handler(request)
        if not resp.prepared:
            resp.headers.setdefault("Cache-Control", "no-store")
            resp.headers["X-Content-Type-Options"] = "nosniff"
            resp.headers["Referrer-Policy"] = "no-referrer"  # the token may be in the URL
            resp.headers["X-Frame-Options"] = "DENY"
        return resp

    @property
    def _guard(self) -> Any:
        from aiohttp import web

        @web.middleware
        async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
            return await self._guard_impl(request, handler)

        return guard

    def _full(self) -> bool:
        return self.viewers >= self.max_clients

    def _busy(self) -> web.Response:
        from aiohttp import web

        return web.Response(status=503, text=busy_page(self.max_clients), content_type="text/html",
                            headers={"Retry-After": "10"})

    async def _page(self, request: web.Request) -> web.Response:
        from aiohttp import web

        if self._full():
            return self._busy()
        html = render_page(title=self.title, token=self.token, video=self.spec.video,
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

    async def _snapshot(self, request: web.Request) -> web.Response:
        from aiohttp import web

        vis, _, version, _ = self.hub.latest()
        if vis is None:
            return web.Response(status=503, text="no frame yet\n", headers={"Retry-After": "1"})
        data = self.hub.jpeg
        if data is None or self.hub.jpeg_version != version:
            assert self.loop is not None
            data = await self.loop.run_in_executor(None, encode_jpeg, vis, self.hub.jpeg_quality)
        return web.Response(body=data, content_type="image/jpeg")

    async def _mjpeg(self, request: web.Request) -> web.StreamResponse:
        from aiohttp import web

        if self._full():
            return self._busy()
        self.viewers += 1
        try:
            resp = web.StreamResponse(headers={
                "Content-Type": "multipart/x-mixed-replace; boundary=frame",
                "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})
            await resp.prepare(request)
            version = 0
            while not self.hub.closed:
                data, version = await self.hub.next_jpeg(version, timeout=5.0)
                if data is None:
                    continue
                # X-Frame-Stamp: time.monotonic() when the frame reached the sink, so a viewer
                # on this machine can measure sink-to-decoded latency (benchmarks/web_sink.py)
                head = (b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                        + str(len(data)).encode() + b"\r\nX-Frame-Stamp: "
                        + f"{self.hub.jpeg_stamp:.6f}".encode() + b"\r\n\r\n")
                try:
                    await asyncio.wait_for(resp.write(head + data + b"\r\n"), WRITE_TIMEOUT_S)
                except (asyncio.TimeoutError, ConnectionError):
                    break
            return resp
        finally:
            self.viewers -= 1

    async def _events(self, request: web.Request) -> web.StreamResponse:
        from aiohttp import web

        if self.events_clients >= self.max_clients + 2:  # a reload may overlap the old page
            return self._busy()
        self.events_clients += 1
        try:
            resp = web.StreamResponse(headers={
                "Content-Type": "text/event-stream", "Cache-Control": "no-store",
                "X-Accel-Buffering": "no"})
            await resp.prepare(request)
            seq = -1
            while True:
                snap = self.snap
                if snap and snap["seq"] != seq:
                    seq = snap["seq"]
                    kind = "end" if snap["ended"] else "stats"
                    msg = f"event: {kind}\ndata: {dumps(snap)}\n\n".encode()
                    try:
                        await asyncio.wait_for(resp.write(msg), WRITE_TIMEOUT_S)
                    except (asyncio.TimeoutError, ConnectionError):
                        break
                    if snap["ended"]:
                        break
                if self.hub.closed:
                    break
                ev = self._snap_event
                assert ev is not None
                try:
                    await asyncio.wait_for(ev.wait(), 15.0)
                except asyncio.TimeoutError:
                    await resp.write(b": keep-alive\n\n")
            return resp
        finally:
            self.events_clients -= 1

    async def _offer(self, request: web.Request) -> web.Response:
        from aiohttp import web

        from edgeseg.web.webrtc import answer_offer

        if self._full():
            return self._busy()
        try:
            body = await request.json()
            sdp, kind = str(body["sdp"]), str(body["type"])
        except (ValueError, KeyError, TypeError):
            return web.Response(status=400, text="expected JSON {sdp, type}\n")
        if kind != "offer":
            return web.Response(status=400, text="expected an SDP offer\n")
        answer = await answer_offer(self, sdp)
        return web.Response(text=json.dumps(answer), content_type="application/json")
