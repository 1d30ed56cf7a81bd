"""The numbers the page and ``/stats`` show, kept in bounded memory.

:class:`LiveStats` is fed from two sides: the sink counts the frames it is handed (so it works
with any pipeline), and the pipeline may push its own running numbers (latency percentiles,
dropped / skipped frames, per-source counts) through ``Sink.on_stats``; pushed numbers win.
:meth:`LiveStats.snapshot` builds the published dict; every snapshot has a ``seq`` so a viewer
can tell whether two readings are the same update.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["HISTORY_S", "LiveStats", "class_shares"]

HISTORY_S = 60  # the page's chart covers the last minute, one point a second
_RATE_WINDOW = 64  # frame times kept for the instantaneous FPS


def class_shares(
    labels: np.ndarray, classes: Sequence[str], palette: Sequence[Sequence[int]], stride: int = 4,
) -> list[dict[str, Any]]:
    """Classes present in ``labels`` with their palette colour (``#rrggbb``) and pixel share
    (0..1, on a ``stride``-subsampled grid), largest first. Ids beyond the classes (255 =
    ignore) count toward the total but are not listed."""
    sub = np.ascontiguousarray(labels[::stride, ::stride]).ravel()
    if sub.size == 0:
        return []
    counts = np.bincount(sub, minlength=256)
    out = []
    for i in np.argsort(-counts[: len(classes)], kind="stable"):
        c = int(counts[i])
        if c == 0:
            break
        r, g, b = (int(v) for v in palette[i]) if i < len(palette) else (0, 0, 0)
        out.append({"id": int(i), "name": classes[i], "color": f"#{r:02x}{g:02x}{b:02x}",
                    "share": c / sub.size})
    return out


class LiveStats:
    """Running numbers for one sink; thread-safe (written by inference, read by the server)."""

    def __init__(
        self, model: dict[str, Any] | None = None,
        power: Callable[[], dict[str, Any]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.model: dict[str, Any] = dict(model or {})
        self._power = power
        self._clock = clock
        self._lock = threading.Lock()
        self.t_start = clock()
        self.frames = 0
        self._times: collections.deque[float] = collections.deque(maxlen=_RATE_WINDOW)
        self._lat: collections.deque[float] = collections.deque(maxlen=512)
        self._pushed: dict[str, Any] = {}
        self.history: collections.deque[dict[str, float]] = collections.deque(maxlen=HISTORY_S)
        self._last_hist = -1
        self.classes: list[dict[str, Any]] = []
        self.seq = 0
        self.ended = False
        self.summary: dict[str, Any] | None = None

    def frame(self, latency_ms: float | None = None) -> None:
        """One frame reached the sink (``latency_ms``: capture to sink, when known)."""
        t = self._clock()
        with self._lock:
            self.frames += 1
            self._times.append(t)
            if latency_ms is not None:
                self._lat.append(latency_ms)

    def push(self, stats: dict[str, Any]) -> None:
        """The pipeline's own running numbers (any of fps, frames, dropped, skipped,
        latency_ms {p50, p99}, power, sources, model)."""
        with self._lock:
            if "model" in stats:
                self.model.update(stats["model"])
            self._pushed.update({k: v for k, v in stats.items() if k != "model"})

    def end(self, summary: dict[str, Any] | None) -> None:
        with self._lock:
            self.ended, self.summary = True, summary

    def fps(self) -> float:
        """Frames per second over the last frames; 0 once no frame came for 2 s."""
        with self._lock:
            ts = list(self._times)
        if len(ts) < 2 or self._clock() - ts[-1] > 2.0:
            return 0.0
        return (len(ts) - 1) / (ts[-1] - ts[0]) if ts[-1] > ts[0] else 0.0

    def _latency(self) -> dict[str, float | None]:
        pushed = self._pushed.get("latency_ms")
        if isinstance(pushed, dict) and "p50" in pushed:
            return {"p50": float(pushed["p50"]), "p99": float(pushed.get("p99", pushed["p50"]))}
        if not self._lat:
            return {"p50": None, "p99": None}
        p50, p99 = np.percentile(np.fromiter(self._lat, np.float64), [50, 99])
        return {"p50": float(p50), "p99": float(p99)}

    def _power_info(self, fps: float) -> dict[str, Any]:
        info: dict[str, Any] = {"available": False, "reason": "no power sensor was given to the sink"}
        if "power" in self._pushed:
            info = dict(self._pushed["power"])
        elif self._power is not None:
            try:
                info = dict(self._power())
            except Exception as e:  # noqa: BLE001 - a sensor hiccup must not break the page
                info = {"available": False, "reason": f"power read failed: {type(e).__name__}: {e}"}
        w = info.get("watts")
        if info.get("available") and w is not None and fps > 0:
            info["mj_per_frame"] = float(w) / fps * 1000.0
        return info

    def snapshot(self, viewers: int = 0, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """The published numbers (a new ``seq`` each call); also records the chart history."""
        fps_live = self.fps()
        now = self._clock()
        with self._lock:
            self.seq += 1
            uptime = now - self.t_start
            pushed = dict(self._pushed)
            lat = self._latency()
            fps = float(pushed["fps"]) if "fps" in pushed and not self.ended else fps_live
            if self.ended and self.summary and "fps" in self.summary:
                fps = float(self.summary["fps"])
            sec = int(uptime)
            if sec != self._last_hist and not self.ended:
                self._last_hist = sec
                self.history.append({"t": round(uptime, 1), "fps": round(fps, 2),
                                     "p50": None if lat["p50"] is None else round(lat["p50"], 2)})
            snap: dict[str, Any] = {
                "seq": self.seq,
                "frames": self.frames,
                "fps": fps,
                "latency_ms": lat,
                "dropped": int(pushed.get("dropped", 0)),
                "skipped": int(pushed.get("skipped", 0)),
                "uptime_s": uptime,
                "viewers": viewers,
                "model": dict(self.model),
                "classes": list(self.classes),
                "sources": pushed.get("sources", []),
                "history": list(self.history),
                "ended": self.ended,
                "summary": self.summary,
            }
        snap["power"] = self._power_info(fps)
        if extra:
            snap.update(extra)
        return snap
