"""The streaming routes of :class:`~edgeseg.web.server.WebServer`: snapshot, MJPEG, SSE, WebRTC offer.

Each viewer stream holds a slot (``max_clients``) for exactly as long as its handler runs:
aiohttp cancels the handler when the socket closes (``handler_cancellation``), and a new
stream from the same browser tab (``?viewer=``) replaces the old one, so a reload never
locks its viewer out. ``HEAD`` answers the headers only and takes no slot.
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import TYPE_CHECKING, Any

from edgeseg.web.hub import FrameHub, encode_jpeg
from edgeseg.web.page import busy_page

if TYPE_CHECKING:
    from aiohttp import web

    from edgeseg.web.limits import WebLimits
    from edgeseg.web.stats import LiveStats

__all__ = ["WRITE_TIMEOUT_S", "StreamRoutes", "dumps"]

WRITE_TIMEOUT_S = 10.0  # a viewer that accepts nothing for this long is dropped



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


class StreamRoutes:
    """Mixed into :class:`~edgeseg.web.server.WebServer` (which sets these attributes)."""

    hub: FrameHub
    stats: LiveStats
    limits: WebLimits
    loop: asyncio.AbstractEventLoop | None
    viewers: int
    max_clients: int
    events_clients: int
    snap: dict[str, Any]
    guard: Any
    _streams: dict[str, asyncio.Task[Any]]
    _snap_event: asyncio.Event | None

    def _full(self) -> bool:
        return self.viewers >= self.max_clients

    def _busy(self) -> web.Response:
        from aiohttp import web

        return web.Response(status=503, text=busy_page(self.max_clients), content_type="text/html",
                            headers={"Retry-After": "10"})

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

    def _take_over(self, request: web.Request) -> bool:
        """A stream from a viewer id (``?viewer=``, random per browser tab) that already has one
        replaces it: a reload frees its own slot instead of waiting for the old socket."""
        vid = request.query.get("viewer", "")[:64]
        if not vid:
            return False
        old = self._streams.pop(vid, None)
        me = asyncio.current_task()
        if me is not None:
            self._streams[vid] = me
        if old is not None and not old.done():
            old.cancel()
            return True
        return False

    def _leave(self, request: web.Request) -> None:
        vid = request.query.get("viewer", "")[:64]
        if vid and self._streams.get(vid) is asyncio.current_task():
            del self._streams[vid]

    async def _mjpeg(self, request: web.Request) -> web.StreamResponse:
        from aiohttp import web

        headers = {"Content-Type": "multipart/x-mixed-replace; boundary=frame"}
        if request.method == "HEAD":  # headers only: no body, no viewer slot
            return web.Response(headers=headers)
        if not self._take_over(request) and self._full():
            self._leave(request)
            return self._busy()
        self.viewers += 1
        try:
            resp = web.StreamResponse(headers=headers)
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
            self._leave(request)

    async def _events(self, request: web.Request) -> web.StreamResponse:
        from aiohttp import web

        headers = {"Content-Type": "text/event-stream", "X-Accel-Buffering": "no"}
        if request.method == "HEAD":
            return web.Response(headers=headers)
        if self.events_clients >= self.max_clients + 2:  # a reload may overlap the old page
            return self._busy()
        self.events_clients += 1
        try:
            resp = web.StreamResponse(headers=headers)
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

        from edgeseg.web.webrtc import OfferError, answer_offer

        # JSON only: a cross-site form or text/plain POST (no CORS preflight) is refused
        if request.content_type != "application/json":
            return web.Response(status=415, text="415: /offer takes application/json\n")
        if self._full():
            return self._busy()
        try:
            raw = await asyncio.wait_for(request.read(), self.limits.header_timeout_s)
            body = json.loads(raw)
            sdp, kind = str(body["sdp"]), str(body["type"])
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            return web.Response(status=400, text="400: expected JSON {sdp, type}\n")
        except asyncio.TimeoutError:
            return web.Response(status=408, text="408: the offer's body came too slowly\n")
        if kind != "offer":
            return web.Response(status=400, text="400: expected an SDP offer\n")
        try:
            answer = await answer_offer(self, sdp, self.limits.connect_timeout_s)  # type: ignore[arg-type]
        except OfferError as e:
            self.guard.gate("bad offer", f"400 for a WebRTC offer: {e}")
            return web.Response(status=400, text=f"400: {e}\n")
        return web.Response(text=json.dumps(answer), content_type="application/json")
