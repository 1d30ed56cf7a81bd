"""The web sinks: ``http://HOST:PORT[/path]`` (MJPEG) and ``webrtc://HOST:PORT/name``.

:class:`WebSink.write` is all the inference thread pays: a reference swap and a counter. The
pipeline may hand its running numbers to :meth:`WebSink.on_stats` (latency percentiles,
dropped / skipped, per-source counts, power, model, and at the end ``summary``). While a web
sink is open SIGTERM stops the run like Ctrl-C, so ``systemctl stop`` also shows viewers
"stream ended" and finalises the other sinks.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.errors import EdgesegError
from edgeseg.video.sinks import Sink
from edgeseg.web.uri import WebSpec, parse_web_uri

__all__ = ["WebSink", "check_web_deps", "open_web_sink"]


def check_web_deps(spec: WebSpec) -> None:
    """One line naming the missing extra, before any model loads."""
    mods = ["aiohttp"] + (["aiortc", "av"] if spec.video == "webrtc" else [])
    import importlib.util

    missing = [m for m in mods if importlib.util.find_spec(m) is None]
    if missing:
        raise EdgesegError(f"--sink {spec.scheme}://...: needs {', '.join(missing)}: "
                           "pip install 'edgeseg[web]'")


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


class WebSink(Sink):
    """Serves the live page for one run; see :mod:`edgeseg.web`.

    Args:
        uri: ``http://HOST:PORT[/path]``, ``https://...`` or ``webrtc://HOST:PORT/name``
            (``@`` = all interfaces, no host = 127.0.0.1, port 0 = a free one).
        classes, palette: the model's, for the legend.
        token: required on every route when set.
        ssl_cert, ssl_key: serve HTTPS.
        max_clients: viewers at once; the next one is answered 503.
        jpeg_quality: 1-100 (MJPEG and snapshots).
        stream_fps: most frames a second sent to viewers (inference is not limited).
        model: shown on the page (variant, backend, precision, input_hw).
        power: called twice a second; returns ``{"available", "watts"}`` or a ``reason``.
        linger_s: after the end, how long the final frame and summary stay served.
        web_host: names (besides IP addresses and localhost) a browser may use in ``Host``.
        limits: connection caps and timeouts (:class:`~edgeseg.web.limits.WebLimits`).
        announce: called once with the URL (real port, token masked) when the server listens;
            the same text is :attr:`shown_url`.
    """

    needs_visual = True

    def __init__(
        self, uri: str | WebSpec, *, classes: Sequence[str] = (),
        palette: Sequence[Sequence[int]] = (), token: str | None = None,
        ssl_cert: str | Path | None = None, ssl_key: str | Path | None = None,
        max_clients: int = 4, jpeg_quality: int = 80, stream_fps: float = 15.0,
        model: dict[str, Any] | None = None, power: Callable[[], dict[str, Any]] | None = None,
        linger_s: float = 1.5, title: str = "edgeseg", web_host: Sequence[str] = (),
        limits: Any = None, announce: Callable[[str], Any] | None = None,
    ) -> None:
        from edgeseg.web.hub import FrameHub
        from edgeseg.web.server import WebServer, ssl_context
        from edgeseg.web.stats import LiveStats

        spec = parse_web_uri(uri) if isinstance(uri, str) else uri
        if not 1 <= jpeg_quality <= 100:
            raise EdgesegError(f"--jpeg-quality must be 1-100, got {jpeg_quality}")
        if not 0 < stream_fps <= 120:
            raise EdgesegError(f"--stream-fps must be in (0, 120], got {stream_fps}")
        check_web_deps(spec)
        ctx = ssl_context(ssl_cert, ssl_key)
        info = {"classes": list(classes), "palette": [list(c) for c in palette], **(model or {})}
        self.spec = spec
        self.hub = FrameHub(jpeg_quality, stream_fps)
        self.stats = LiveStats(info, power)
        self.server = WebServer(spec, self.hub, self.stats, token=token, ssl_ctx=ctx,
                                max_clients=max_clients, title=title, linger_s=linger_s,
                                web_host=web_host, limits=limits, announce=announce)
        self.server.start()
        self.url = self.server.url
        self.shown_url = self.server.shown_url
        self.name = f"{spec.scheme}://{spec.host}:{self.server.port}{'' if spec.path == '/' else spec.path}"
        self._t_first: float | None = None
        self._t_last = 0.0
        self._closed = False
        self._old_term: Any = None
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None)):
            self._old_term = signal.signal(signal.SIGTERM, _raise_interrupt)

    def write(self, frame: Any, labels: np.ndarray, vis: np.ndarray | None) -> bool:
        self.hub.put(vis, labels)
        self.stats.frame()
        t = time.perf_counter()
        if self._t_first is None:
            self._t_first = t
        self._t_last = t
        return True

    def on_stats(self, stats: dict[str, Any]) -> None:
        """The pipeline's running numbers; a ``summary`` key is the run's final one."""
        summary = stats.get("summary")
        self.stats.push({k: v for k, v in stats.items() if k != "summary"})
        if summary is not None:
            self.stats.end(summary)

    def _own_summary(self) -> dict[str, Any]:
        n = self.stats.frames
        span = self._t_last - self._t_first if self._t_first is not None else 0.0
        return {"frames": n, "fps": (n - 1) / span if n > 1 and span > 0 else 0.0,
                "stop_reason": "end"}

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if not self.stats.ended:
                self.stats.end(self._own_summary())
            self.server.stop()
        finally:
            if self._old_term is not None:
                signal.signal(signal.SIGTERM, self._old_term)
                self._old_term = None


def open_web_sink(spec: str, **kw: Any) -> WebSink:
    """The registry's opener for http / https / webrtc sinks (unknown options ignored)."""
    keys = ("classes", "palette", "token", "ssl_cert", "ssl_key", "max_clients", "jpeg_quality",
            "stream_fps", "model", "power", "linger_s", "title", "web_host", "limits", "announce")
    return WebSink(spec, **{k: v for k, v in kw.items() if k in keys and v is not None})


def open_registered(spec: Any, *, classes: Sequence[str], palette: Sequence[Sequence[int]],
                    **options: Any) -> WebSink:
    """Opener of the ``web`` / ``webrtc`` entries in :mod:`edgeseg.video.registry`: ``spec``
    is the :class:`~edgeseg.video.sinks.SinkSpec`; ``options`` the CLI's web options."""
    return open_web_sink(spec.target, classes=classes, palette=palette, **options)
