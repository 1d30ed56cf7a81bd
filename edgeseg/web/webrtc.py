"""WebRTC video for the page: one aiortc peer per viewer fed from the hub's latest frame.

Signalling is one POST: the page sends its offer (ICE gathered, no trickle) to ``/offer`` and
gets the answer. The track paces itself at ``stream_fps`` and always sends the newest frame,
so a viewer on a slow link gets fewer frames, never older ones; aiortc encodes VP8 in software
(libvpx), one encoder per peer since each adapts its own bitrate.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from edgeseg.web.server import WebServer

__all__ = ["CLOCK_RATE", "OfferError", "answer_offer", "even_crop", "make_track"]

CLOCK_RATE = 90_000  # RTP video clock
OFFER_TIMEOUT_S = 10.0
REPEAT_S = 1.0


class OfferError(ValueError):
    """An offer aiortc cannot answer (garbage SDP, no video): a 400, never a 500."""


def even_crop(img: np.ndarray) -> np.ndarray:
    """Drop a last odd row / column: 4:2:0 chroma needs even sizes."""
    h, w = img.shape[:2]
    return img[: h - h % 2, : w - w % 2]


def make_track(server: WebServer) -> Any:
    """A ``MediaStreamTrack`` sending ``server.hub``'s newest picture at ``stream_fps``."""
    import av
    from aiortc import MediaStreamTrack
    from aiortc.mediastreams import MediaStreamError

    hub = server.hub

    class HubTrack(MediaStreamTrack):
        kind = "video"

        def __init__(self) -> None:
            super().__init__()
            self._t0: float | None = None
            self._next = 0.0
            self._sent = -1

        async def recv(self) -> Any:
            period = 1.0 / hub.stream_fps
            now = time.monotonic()
            if self._next > now:
                await asyncio.sleep(self._next - now)
            self._next = max(now, self._next) + period
            # a new frame, or the same one again after REPEAT_S so the decoder stays alive
            until = time.monotonic() + REPEAT_S
            vis, _, version, _ = hub.latest()
            while ((vis is None or version == self._sent) and not hub.closed
                   and (vis is None or time.monotonic() < until)):
                await asyncio.sleep(min(period, 0.02))
                vis, _, version, _ = hub.latest()
            self._sent = version
            if hub.closed or vis is None:
                self.stop()
                raise MediaStreamError
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(even_crop(vis)), format="bgr24")
            t = time.monotonic()
            if self._t0 is None:
                self._t0 = t
            frame.pts = int((t - self._t0) * CLOCK_RATE)
            frame.time_base = fractions.Fraction(1, CLOCK_RATE)
            return frame

    return HubTrack()


async def answer_offer(server: WebServer, sdp: str, connect_timeout_s: float = 15.0,
                       ) -> dict[str, str]:
    """Answer a browser's offer with a VP8 video track. The peer holds a viewer slot from the
    offer on; the slot is freed when the connection fails or closes, when the server stops, or
    when ICE has not connected ``connect_timeout_s`` after the answer (a client that left, or
    no usable ICE route: the page then falls back to MJPEG)."""
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription

    # no ICE servers: aiortc's default asks stun.l.google.com, which a robot's network may not
    # reach (gathering then waits) and which need not learn that a viewer connected
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    server.peers.add(pc)
    server.viewers += 1

    def release() -> None:
        if pc in server.peers:
            server.peers.discard(pc)
            server.viewers -= 1

    async def drop() -> None:
        release()
        await pc.close()

    @pc.on("connectionstatechange")
    async def _state() -> None:
        if pc.connectionState in ("failed", "closed"):
            await drop()

    async def deadline() -> None:
        await asyncio.sleep(connect_timeout_s)
        if pc.connectionState != "connected":
            await drop()

    async def negotiate() -> None:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        pc.addTrack(make_track(server))
        vp8 = [c for c in RTCRtpSender.getCapabilities("video").codecs
               if c.mimeType.lower() in ("video/vp8", "video/rtx")]
        for t in pc.getTransceivers():
            if t.kind == "video":
                t.setCodecPreferences(vp8)
        await pc.setLocalDescription(await pc.createAnswer())

    try:
        try:  # the whole answer is bounded: an offer aiortc stalls on must not hold its slot
            await asyncio.wait_for(negotiate(), OFFER_TIMEOUT_S)
        except asyncio.TimeoutError:
            raise OfferError(f"could not answer the offer within {OFFER_TIMEOUT_S:g} s") from None
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as e:
            # aiortc parses SDP loosely and fails deep inside (e.g. "None is not in list")
            raise OfferError(f"cannot answer this SDP offer ({type(e).__name__})") from None
    except BaseException:
        await drop()
        raise
    task = asyncio.ensure_future(deadline())
    server.peer_tasks.add(task)
    task.add_done_callback(server.peer_tasks.discard)
    return {"sdp": pc.localDescription.sdp, "type": pc.localDescription.type}
