"""``--sink http://HOST:PORT[/path]`` and ``webrtc://HOST:PORT/name`` (jetson-inference style).

``@`` means all interfaces (0.0.0.0); no host means loopback, so exposing the device on a
network is always an explicit choice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from edgeseg.errors import EdgesegError

__all__ = ["DEFAULT_PORTS", "SCHEMES", "WebSpec", "parse_web_uri"]

SCHEMES = ("http", "https", "webrtc")
DEFAULT_PORTS = {"http": 8080, "https": 8443, "webrtc": 8554}
LOOPBACK = "127.0.0.1"
_PATH_RE = re.compile(r"^(/[A-Za-z0-9._~-]+)*/?$")


@dataclass(frozen=True)
class WebSpec:
    """A parsed web sink: ``scheme`` http | https | webrtc, the bind ``host`` and ``port``
    (0 = any free port), and the page ``path`` (``/`` or ``/name``)."""

    scheme: str
    host: str
    port: int
    path: str = "/"

    @property
    def video(self) -> str:
        """How the page shows the video: mjpeg or webrtc."""
        return "webrtc" if self.scheme == "webrtc" else "mjpeg"

    @property
    def tls_requested(self) -> bool:
        return self.scheme == "https"


def parse_web_uri(spec: str) -> WebSpec:
    """``http://@:8080`` -> all interfaces, ``http://:8080`` or ``http://8080``-less forms ->
    loopback; ``webrtc://@:8554/live`` -> page at ``/live``. Errors name the part at fault."""
    s = spec.strip()
    if "://" not in s:
        raise EdgesegError(f"--sink {s!r}: expected http://HOST:PORT[/path] or webrtc://HOST:PORT/name")
    scheme, rest = s.split("://", 1)
    scheme = scheme.lower()
    if scheme not in SCHEMES:
        raise EdgesegError(f"--sink {s!r}: unknown scheme {scheme!r} (expected {', '.join(SCHEMES)})")
    if "?" in rest or "#" in rest:
        raise EdgesegError(f"--sink {s!r}: no query or fragment allowed (use --web-token for a token)")
    netloc, _, path = rest.partition("/")
    path = "/" + path
    if "@" in netloc and not netloc.startswith("@"):
        raise EdgesegError(f"--sink {s!r}: no user@ part allowed (use --web-token)")
    all_ifaces = netloc.startswith("@")
    if all_ifaces:
        netloc = netloc[1:]
    try:
        parts = urlsplit(f"//{netloc}")
        port = parts.port
    except ValueError as e:
        raise EdgesegError(f"--sink {s!r}: bad port ({e})") from None
    host = parts.hostname or ""
    if all_ifaces:
        if host:
            raise EdgesegError(f"--sink {s!r}: give either @ (all interfaces) or a host, not both")
        host = "0.0.0.0"
    elif not host:
        host = LOOPBACK
    if not _PATH_RE.match(path) or any(seg.strip(".") == "" for seg in path.strip("/").split("/")
                                       if seg):
        raise EdgesegError(f"--sink {s!r}: path {path!r} may hold only letters, digits and . _ ~ -")
    path = path.rstrip("/") or "/"
    if path in ("/stats", "/events", "/stream.mjpg", "/snapshot.jpg", "/healthz", "/offer"):
        raise EdgesegError(f"--sink {s!r}: path {path} is one of the app's own routes")
    return WebSpec(scheme, host, DEFAULT_PORTS[scheme] if port is None else port, path)
