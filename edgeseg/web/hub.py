"""The latest frame, handed from the inference thread to the server loop and encoded once.

:meth:`FrameHub.put` (inference thread) only swaps references under a lock: no copy, no
encoding, no waiting on viewers. The server loop's ticker (at most ``stream_fps``) encodes the
newest frame once to JPEG for all MJPEG viewers and wakes them; each viewer then sends that one
frame, so a slow viewer skips frames instead of queueing them, and memory per viewer is one
frame at most whatever the network does.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import numpy as np

__all__ = ["FrameHub", "encode_jpeg"]


def encode_jpeg(bgr: np.ndarray, quality: int) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover - cv2 fails only on empty / odd images
        raise ValueError(f"cannot JPEG-encode an image of shape {bgr.shape}")
    return buf.tobytes()


class FrameHub:
    """Latest visualisation + labels (thread side) and latest JPEG (loop side)."""

    def __init__(self, jpeg_quality: int = 80, stream_fps: float = 15.0) -> None:
        self.jpeg_quality = jpeg_quality
        self.stream_fps = stream_fps
        self._lock = threading.Lock()
        self._vis: np.ndarray | None = None
        self._labels: np.ndarray | None = None
        self._stamp = 0.0  # time.monotonic() when the frame reached the sink
        self.version = 0  # frames put
        self.jpeg: bytes | None = None
        self.jpeg_version = 0  # the put() version the JPEG was made from
        self.jpeg_stamp = 0.0
        self.encoded = 0  # JPEG encodes done (one per tick with viewers, not one per viewer)
        self._event: asyncio.Event | None = None
        self.closed = False

    # -- inference thread ----------------------------------------------------------------
    def put(self, vis: np.ndarray | None, labels: np.ndarray | None) -> None:
        with self._lock:
            if vis is not None:
                self._vis = vis
            if labels is not None:
                self._labels = labels
            self._stamp = time.monotonic()
            self.version += 1

    # -- either side ---------------------------------------------------------------------
    def latest(self) -> tuple[np.ndarray | None, np.ndarray | None, int, float]:
        with self._lock:
            return self._vis, self._labels, self.version, self._stamp

    # -- server loop ---------------------------------------------------------------------
    def _wake(self) -> None:
        if self._event is not None:
            self._event.set()
        self._event = asyncio.Event()

    async def encode_latest(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Encode the newest frame if it is newer than the JPEG (off the loop, cv2 drops the
        GIL); wake the viewers. True when a new JPEG was made."""
        vis, _, version, stamp = self.latest()
        if vis is None or version == self.jpeg_version:
            return False
        data = await loop.run_in_executor(None, encode_jpeg, vis, self.jpeg_quality)
        self.jpeg, self.jpeg_version, self.jpeg_stamp = data, version, stamp
        self.encoded += 1
        self._wake()
        return True

    async def next_jpeg(self, after: int, timeout: float) -> tuple[bytes | None, int]:
        """The first JPEG newer than version ``after`` (waiting up to ``timeout`` s), or
        ``(None, after)`` on timeout / close."""
        deadline = time.monotonic() + timeout
        while not self.closed:
            if self.jpeg is not None and self.jpeg_version > after:
                return self.jpeg, self.jpeg_version
            if self._event is None:
                self._event = asyncio.Event()
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                await asyncio.wait_for(self._event.wait(), left)
            except asyncio.TimeoutError:
                break
        return None, after

    def close(self) -> None:
        self.closed = True
        if self._event is not None:
            self._event.set()

    def info(self) -> dict[str, Any]:
        return {"frames_put": self.version, "jpeg_encodes": self.encoded}
