"""The web package's entries in the source/sink registry (:mod:`edgeseg.video.registry`).

The registry lives in video/, below this package, and names nothing above it; :func:`register`
adds the ``http(s)://`` and ``webrtc://`` sinks. It is called once by the composition root
(:mod:`edgeseg.io`), so ``--sink http://...`` works wherever the CLI or ``edgeseg.run`` runs.
Importing this module is light: the openers are named as strings of this package's own
modules and imported only when a sink of that kind is opened.
"""

from __future__ import annotations

from edgeseg.video.registry import IOKind, register_sink

__all__ = ["KINDS", "register"]

KINDS = (
    IOKind(
        "web", "edgeseg.web.sink:open_registered", schemes=("http", "https"), live=True,
        help="http://HOST:PORT[/path]: live page (MJPEG + stats); @ = all interfaces, no host = "
             "127.0.0.1"),
    IOKind(
        "webrtc", "edgeseg.web.sink:open_registered", schemes=("webrtc",), live=True,
        help="webrtc://HOST:PORT/name: the live page with a WebRTC (VP8) video"),
)


def register() -> None:
    """Add the web sinks to the registry (again is harmless: entries are keyed by kind)."""
    for kind in KINDS:
        register_sink(kind)
